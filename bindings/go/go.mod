module rodiff.dev/rodiff

go 1.19
