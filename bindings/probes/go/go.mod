module rodiff.dev/probes

go 1.19

require rodiff.dev/rodiff v0.0.0

replace rodiff.dev/rodiff => ../../go
