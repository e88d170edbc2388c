//! The oracle corpus: a fixture image layer and the file operations a container's application may
//! do to it. `docker_oracle.rs` runs it in Docker containers, `containerd.rs` in containerd
//! containers on each snapshotter, and both compare with `docker diff`.

/// The image layer the corpus changes: made with `docker commit`, so it is a real image layer.
pub const FIXTURE: &str = r#"
set -e
mkdir -p /fx/data /fx/tree/x/y /fx/del/sub /fx/ren /fx/rendir/inner /fx/recreate /fx/tmpd \
         /fx/swapdir /fx/keep /fx/modes /fx/caps
for f in a b c d e; do echo "data $f" > /fx/data/$f.txt; done
echo z > /fx/tree/x/y/z.txt
echo 1 > /fx/del/1; echo 2 > /fx/del/sub/2
echo f > /fx/ren/file
echo inner > /fx/rendir/inner/f
echo old > /fx/recreate/old
echo same > /fx/keep/same; echo again > /fx/keep/again
echo m > /fx/modes/chmod; echo o > /fx/modes/chown; echo t > /fx/modes/touch; echo long > /fx/modes/trunc
echo file > /fx/swapdir/file-to-dir
echo bind > /fx/caps/bind
mkdir /fx/swapdir/dir-to-file
# Image times well in the past: a layer keeps whole seconds, and a change made within the same
# second as the image would otherwise look like no change at all (to docker diff as to rodiff).
find /fx -exec touch -h -d '2001-01-01 00:00:00' {} +
"#;

/// The corpus: every operation a container's application may do to its filesystem.
pub const CORPUS: &str = r#"
set -e
echo new > /fx/data/new.txt                       # add
echo more >> /fx/data/a.txt                       # modify
rm /fx/data/b.txt                                 # delete
rm -rf /fx/del                                    # recursive delete
rm -rf /fx/recreate && mkdir /fx/recreate && echo n > /fx/recreate/new   # delete, then re-create
mv /fx/ren/file /fx/ren/file2                     # rename a file
mv /fx/rendir /fx/rendir2                         # rename a directory
ln /fx/data/c.txt /fx/hardlink                    # hard link
ln -s /etc/passwd /fx/symlink                     # symlink
mkfifo /fx/fifo                                   # fifo
chmod 600 /fx/modes/chmod                         # chmod only
chown 65534:65534 /fx/modes/chown                 # chown only
touch /fx/modes/touch                             # touch only
: > /fx/modes/trunc                               # truncate
: > /fx/empty                                     # empty file
dd if=/dev/zero of=/fx/big bs=1M count=8 2>/dev/null   # 8 MiB file
mkdir -p /fx/deep/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18/19/20/21/22/23/24/25/26/27/28/29/30
echo leaf > /fx/deep/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18/19/20/21/22/23/24/25/26/27/28/29/30/leaf
echo s > "/fx/with space"                         # names with spaces
echo n > "$(printf '/fx/new\nline')"              # a newline in a name
echo b > "$(printf '/fx/bad\377byte')"            # a byte that is not UTF-8
touch /fx/tmpd/scratch && rm /fx/tmpd/scratch     # temp file made and removed
: >> /fx/keep/same                                # opened for writing, nothing written
chmod 600 /fx/keep/again && chmod 644 /fx/keep/again   # chmod and back
rm /fx/swapdir/file-to-dir && mkdir /fx/swapdir/file-to-dir   # file replaced by a directory
rmdir /fx/swapdir/dir-to-file && echo f > /fx/swapdir/dir-to-file   # directory replaced by a file
mkdir -p /newtop/a/b && echo x > /newtop/a/b/c    # a new tree at the top
rm /fx/data/d.txt && echo back > /fx/data/d.txt   # delete and re-create a file
"#;
