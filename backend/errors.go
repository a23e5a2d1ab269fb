package backend

import "github.com/txoutbox/outbox"

// InvalidArgument returns an *outbox.ArgumentError, which matches outbox.ErrInvalidArgument.
// Stores wrap it with their prefix ("postgres: ack: invalid argument: token is empty").
func InvalidArgument(arg, problem string) error {
	return &outbox.ArgumentError{Arg: arg, Problem: problem}
}
