module github.com/txoutbox/outbox/transport/rabbitmq

go 1.26

require github.com/txoutbox/outbox v0.0.0

replace github.com/txoutbox/outbox => ../../
