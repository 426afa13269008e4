module github.com/dstream-io/dstream/tools/httpprobe

go 1.26
