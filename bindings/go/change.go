package rodiff

import (
	"io/fs"
	"time"
)

// Kind says what happened to a path.
type Kind byte

// The kinds of change, with the letters rodiff diff prints.
const (
	// Added: the path is new in the container.
	Added Kind = 'A'
	// Changed: the path differs from the image's.
	Changed Kind = 'C'
	// Deleted: the image's path is gone.
	Deleted Kind = 'D'
	// Touched: the path was written but is identical to the image's now (docker diff omits it).
	Touched Kind = 'T'
)

// String returns the kind's letter: "A", "C", "D" or "T".
func (k Kind) String() string {
	return string(rune(k))
}

// FileType is the type of a filesystem entry.
type FileType uint8

// The file types (rodiff_file_type in include/rodiff.h).
const (
	// File is a regular file.
	File FileType = iota
	// Dir is a directory.
	Dir
	// Symlink is a symbolic link.
	Symlink
	// Fifo is a named pipe.
	Fifo
	// Socket is a unix socket.
	Socket
	// CharDevice is a character device.
	CharDevice
	// BlockDevice is a block device.
	BlockDevice
)

var fileTypeNames = [...]string{"file", "dir", "symlink", "fifo", "socket", "char", "block"}

// String returns the name rodiff's JSON output uses: "file", "dir", "symlink", "fifo", "socket",
// "char" or "block".
func (t FileType) String() string {
	if int(t) < len(fileTypeNames) {
		return fileTypeNames[t]
	}
	return "unknown"
}

var fileTypeModes = [...]fs.FileMode{0, fs.ModeDir, fs.ModeSymlink, fs.ModeNamedPipe, fs.ModeSocket,
	fs.ModeDevice | fs.ModeCharDevice, fs.ModeDevice}

// Change is one change to a container's root filesystem. A Change owns its memory: it stays
// valid after the call that returned it.
type Change struct {
	// Path is the absolute path inside the container, as bytes (file names need not be UTF-8).
	Path []byte
	// Kind says what happened.
	Kind Kind
	// Type is the entry's type (for a deletion, the type it had in the image).
	Type FileType
	// HasMetadata says whether Mode, UID, GID, Size and MTime are set (not for deletions).
	HasMetadata bool
	// Mode holds the permission bits with the set-user-id, set-group-id and sticky bits, as
	// stat(2) has them (0o7777); see FileMode for Go's form.
	Mode uint32
	// UID is the owner's user id, as stored in the layer.
	UID uint32
	// GID is the owner's group id, as stored in the layer.
	GID uint32
	// Size is the size in bytes.
	Size uint64
	// MTime is the modification time (the zero Time without metadata).
	MTime time.Time
	// Mountpoint says the entry exists only because the runtime made a mount point there.
	Mountpoint bool
	// Container names the container the change belongs to when the call covered a pod; else "".
	Container string
}

// PathString returns the path as a string (the bytes unchanged, even when not UTF-8).
func (c Change) PathString() string {
	return string(c.Path)
}

// String returns the change as rodiff diff prints it: the kind's letter, a space, the path.
func (c Change) String() string {
	return c.Kind.String() + " " + string(c.Path)
}

// FileMode returns the type and Mode in Go's form (fs.ModeDir, fs.ModeSetuid, …).
func (c Change) FileMode() fs.FileMode {
	m := fs.FileMode(c.Mode & 0o777)
	if c.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if c.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if c.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	if int(c.Type) < len(fileTypeModes) {
		m |= fileTypeModes[c.Type]
	}
	return m
}
