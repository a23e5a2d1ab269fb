package main

import (
	"fmt"
	"strconv"

	"github.com/txoutbox/outbox/cmd/outbox/internal/storeurl"
	"github.com/txoutbox/outbox/envconfig"
	"github.com/txoutbox/outbox/transport/nats"
	"github.com/txoutbox/outbox/transport/rabbitmq"
	"github.com/txoutbox/outbox/transport/sqs"
)

// The command's OUTBOX_* variables, each also a flag of the same name. The relay's tuning is
// the root package's list (envconfig.RelaySettings), the one outboxfx reads too, and each transport's is its
// package's (sqs.Settings, nats.Settings, rabbitmq.Settings), except Kafka's, which the
// command lists (kafkaSettings); only what belongs to this command is listed here.
// docs/cli.md's table of variables is generated from these lists (TestDocsListEverySetting).

// defaultListen is where /healthz and /metrics are served unless --listen says otherwise.
const defaultListen = "127.0.0.1:9090"

func storeSettings() []envconfig.Setting[storeFlags] {
	return []envconfig.Setting[storeFlags]{
		envconfig.StringSetting("OUTBOX_STORE", "", "none", "store URL: postgres://USER[:PASS]@HOST/DB, mysql://USER[:PASS]@HOST:3306/DB, mongodb://HOST/DB?replicaSet=RS or sqlite:PATH",
			func(s *storeFlags) *string { return &s.url }),
		envconfig.StringSetting("OUTBOX_SCHEMA", "", "public", "postgres schema of the outbox table",
			func(s *storeFlags) *string { return &s.opts.Schema }),
		envconfig.StringSetting("OUTBOX_TABLE", "", "outbox", "outbox table, postgres, mysql and sqlite",
			func(s *storeFlags) *string { return &s.opts.Table }),
		envconfig.StringSetting("OUTBOX_COLLECTION", "", "outbox", "outbox collection, mongodb",
			func(s *storeFlags) *string { return &s.opts.Collection }),
		envconfig.StringSetting("OUTBOX_DATABASE", "", "the URL's path", "mongodb database",
			func(s *storeFlags) *string { return &s.opts.Database }),
		envconfig.StringSetting("OUTBOX_POSTGRES_MODE", "", storeurl.ModeTable, "postgres: table (messages are rows the relay claims) or wal (messages written into the WAL and streamed from a logical replication slot; needs wal_level=logical, see docs/wal.md)",
			func(s *storeFlags) *string { return &s.opts.PostgresMode }),
		envconfig.StringSetting("OUTBOX_WAL_SLOT", "", "outbox_SCHEMA_TABLE", "wal mode: the logical replication slot the relay reads; one relay holds it, the others stand by",
			func(s *storeFlags) *string { return &s.opts.WAL.Slot }),
		envconfig.StringSetting("OUTBOX_WAL_PUBLICATION", "", "the slot's name", "wal mode: the (empty) publication the slot is read with",
			func(s *storeFlags) *string { return &s.opts.WAL.Publication }),
		envconfig.StringSetting("OUTBOX_WAL_REPLICATION_URL", "", "the store URL", "wal mode: connection string of the replication connection: PostgreSQL itself (not PgBouncer), a role with REPLICATION",
			func(s *storeFlags) *string { return &s.opts.WAL.ReplicationURL }),
		int64Setting("OUTBOX_WAL_LAG_ALARM", "", "1073741824 (1 GiB)", "wal mode: slot lag in bytes (WAL written since the slot's confirmed position) past which /healthz fails and status warns",
			func(s *storeFlags) *int64 { return &s.opts.WAL.LagAlarmBytes }),
		int64Setting("OUTBOX_WAL_MAX_BUFFERED_BYTES", "", "67108864 (64 MiB)", "wal mode: bytes of streamed, unsettled messages the relay holds in memory (at least 1 MiB); a transaction larger than that goes to the table as it is decoded",
			func(s *storeFlags) *int64 { return &s.opts.WAL.MaxBufferedBytes }),
	}
}

// int64Setting is a Setting of an int64 field (core has only int): a byte count.
func int64Setting[C any](env, field, def, doc string, ptr func(*C) *int64) envconfig.Setting[C] {
	return envconfig.Setting[C]{Env: env, Field: field, Kind: envconfig.KindInt, Default: def, Doc: doc, Set: func(c *C, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: not an integer", env)
		}
		*ptr(c) = n
		return nil
	}}
}

// relayCommandSettings are the relay command's own settings, beside the root package's.
func relayCommandSettings() []envconfig.Setting[relayFlags] {
	return []envconfig.Setting[relayFlags]{
		envconfig.BoolSetting("OUTBOX_KEEP_DELIVERED", "", "false", "mark published messages delivered instead of deleting them",
			func(r *relayFlags) *bool { return &r.keepDelivered }),
		envconfig.StringSetting("OUTBOX_LISTEN", "", defaultListen, `address of /healthz and /metrics; "off" disables them`,
			func(r *relayFlags) *string { return &r.listen }),
		envconfig.StringSetting("OUTBOX_LOG_LEVEL", "", "info", "debug, info, warn or error",
			func(r *relayFlags) *string { return &r.logLevel }),
	}
}

// consoleSettings are the console's, of outbox relay (--console-addr) and outbox console
// (which names its flags without "console-": --listen, --read-only, --hide-payloads).
func consoleSettings() []envconfig.Setting[consoleFlags] {
	return []envconfig.Setting[consoleFlags]{
		envconfig.StringSetting("OUTBOX_CONSOLE_ADDR", "", "off (relay), "+defaultConsoleAddr+" (outbox console, as --listen)", "address of the operator console (docs/console.md); beyond loopback only with OUTBOX_CONSOLE_TOKEN",
			func(c *consoleFlags) *string { return &c.addr }),
		envconfig.SecretSetting("OUTBOX_CONSOLE_TOKEN", "", "the console's token (at least 16 bytes), which every requeue and purge needs; without it the console is read-only",
			func(c *consoleFlags) *string { return &c.token }),
		envconfig.BoolSetting("OUTBOX_CONSOLE_READ_ONLY", "", "false", "the console refuses every mutation (outbox console: --read-only)",
			func(c *consoleFlags) *bool { return &c.readOnly }),
		envconfig.BoolSetting("OUTBOX_CONSOLE_HIDE_PAYLOADS", "", "false", "the console never shows a payload or result (outbox console: --hide-payloads)",
			func(c *consoleFlags) *bool { return &c.hidePayloads }),
	}
}

// transportSettings choose the transport; each transport's own follow in allSettings.
func transportSettings() []envconfig.Setting[transportFlags] {
	return []envconfig.Setting[transportFlags]{
		envconfig.StringSetting("OUTBOX_TRANSPORT", "", "sqs", `sqs, kafka, nats, rabbitmq, or memory to print each message's JSON envelope on stdout instead (for trying things out)`,
			func(t *transportFlags) *string { return &t.kind }),
	}
}

// settingDoc is one row of the documentation's table of variables.
type settingDoc struct {
	env, flag, def, doc string
	kind                envconfig.SettingKind
}

func docsOf[C any](settings []envconfig.Setting[C]) []settingDoc {
	out := make([]settingDoc, len(settings))
	for i, s := range settings {
		out[i] = settingDoc{env: s.Env, flag: s.Flag(), def: s.Default, doc: s.Doc, kind: s.Kind}
	}
	return out
}

// allSettings lists every variable of the command, in the order docs/cli.md shows them.
func allSettings() []settingDoc {
	var out []settingDoc
	out = append(out, docsOf(storeSettings())...)
	out = append(out, docsOf(envconfig.RelaySettings())...)
	out = append(out, docsOf(relayCommandSettings())...)
	out = append(out, docsOf(consoleSettings())...)
	out = append(out, docsOf(transportSettings())...)
	out = append(out, docsOf(sqs.Settings())...)
	out = append(out, docsOf(kafkaSettings())...)
	out = append(out, docsOf(nats.Settings())...)
	return append(out, docsOf(rabbitmq.Settings())...)
}
