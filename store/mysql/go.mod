module github.com/txoutbox/outbox/store/mysql

go 1.26.0

require (
	github.com/go-sql-driver/mysql v1.9.2
	github.com/txoutbox/outbox v0.1.0
	go.uber.org/goleak v1.3.0
)

require filippo.io/edwards25519 v1.1.0 // indirect
