// Package envconfig is the vocabulary of OUTBOX_* environment variables and command-line flags
// that set the relay's and the backends' configs: one Setting per config field, with its kind,
// its documented default and a line of help. outboxfx.ConfigFromEnv reads the variables, the
// outbox command offers each as a flag of the same name, and the docs are checked against the
// lists, so the three cannot drift. RelaySettings is the list for outbox.Config; a transport or
// store that can be configured from the environment exports its own (sqs.Settings) and a program
// combines them with Nest.
//
// Applications that build their configs in Go do not need this package: it is plumbing for
// outboxfx, cmd/outbox and backends that want to be configured the same way.
package envconfig
