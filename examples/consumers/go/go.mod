module example.com/aicc-events-consumer

go 1.19
