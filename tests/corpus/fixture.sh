# The oracle corpus's image layer (tests/common/corpus.rs, python/tests): run by `sh -c` in a
# container that `docker commit` turns into the fixture image.
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
