module rtm2bench/loadgen

go 1.26.8
