// Command fx-service is an HTTP service built with go.uber.org/fx whose POST /users handler
// writes a user row and its USER_CREATED event in one PostgreSQL transaction, while the relay,
// run by outboxfx inside the same application, publishes the events to SQS.
//
//	OUTBOX_POSTGRES_URL=postgres://root@127.0.0.1:5432/test \
//	OUTBOX_SQS_QUEUE_URL=users OUTBOX_SQS_ENDPOINT=http://127.0.0.1:4566 OUTBOX_SQS_REGION=us-east-1 \
//	OUTBOX_SQS_ACCESS_KEY_ID=test OUTBOX_SQS_SECRET_ACCESS_KEY=test \
//	go run ./examples/fx-service
//
//	curl -X POST localhost:8080/users -d '{"name":"ada","email":"ada@example.com"}'
//
// Its test swaps the SQS transport for transport/memory with fx.Decorate and checks that the
// event of an HTTP request is published.
package main

import (
	"fmt"
	"os"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"

	"github.com/txoutbox/outbox/outboxfx"
)

func main() {
	cfg, err := ConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fx-service:", err)
		if isMissing(err) {
			os.Exit(2)
		}
		os.Exit(1)
	}
	app := fx.New(
		service(cfg),
		fx.WithLogger(func(log *zap.Logger) fxevent.Logger { return &fxevent.ZapLogger{Logger: log} }),
	)
	app.Run() // until SIGINT or SIGTERM; exits 1 itself when the app fails to start
}

// service is the whole application; tests add decorations to it.
func service(cfg Config) fx.Option {
	return fx.Options(
		fx.Supply(cfg),
		fx.Provide(
			zap.NewProduction,
			newPool,
			newStore,
			asCoreStore,
			newTransport,
			outboxfx.ConfigFromEnv,
			newServer,
		),
		outboxfx.Module,
		fx.Invoke(func(*Server) {}), // the server is the point of the service
	)
}
