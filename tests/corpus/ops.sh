# The oracle corpus: every operation a container's application may do to its filesystem, run by
# `sh -c` in a container of the fixture image (tests/common/corpus.rs, python/tests).
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
