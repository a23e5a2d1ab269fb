package storeurl

import (
	"errors"
	"strings"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		opts    Options
		kind    Kind
		wantErr string // substring; "" means success
	}{
		{"postgres", "postgres://u:p@localhost:5432/db", Options{Schema: "app", Table: "events"}, Postgres, ""},
		{"postgresql scheme", "postgresql://localhost/db?sslmode=disable", Options{}, Postgres, ""},
		{"mongo", "mongodb://localhost:27017/app?replicaSet=rs0", Options{Collection: "events"}, Mongo, ""},
		{"mongo srv with database flag", "mongodb+srv://cluster.example.com/", Options{Database: "app"}, Mongo, ""},
		{"sqlite", "sqlite:./outbox.db", Options{Table: "events"}, SQLite, ""},
		{"sqlite slashes", "sqlite:///tmp/outbox.db", Options{}, SQLite, ""},
		{"empty", "", Options{}, "", "is empty"},
		{"no scheme", "localhost:5432", Options{}, "", "unknown scheme"},
		{"plain word", "nothing", Options{}, "", "has no scheme"},
		{"unknown scheme", "oracle://localhost/db", Options{}, "", `unknown scheme "oracle"`},
		{"postgres without slashes", "postgres:localhost", Options{}, "", "starts with postgres://"},
		{"bad postgres URL", "postgres://u:p@host:notaport/db", Options{}, "", "invalid port"},
		{"bad table", "postgres://localhost/db", Options{Table: "drop table;"}, "", "Table"},
		{"bad schema", "postgres://localhost/db", Options{Schema: "1abc"}, "", "Schema"},
		{"mongo without database", "mongodb://localhost:27017", Options{}, "", "Database"},
		{"sqlite without file", "sqlite:", Options{}, "", "names no file"},
		{"sqlite in memory", "sqlite::memory:", Options{}, "", "in-memory"},
		{"schema on mongo", "mongodb://localhost/app", Options{Schema: "x"}, "", "--schema applies to postgres only"},
		{"table on mongo", "mongodb://localhost/app", Options{Table: "x"}, "", "use --collection"},
		{"collection on postgres", "postgres://localhost/db", Options{Collection: "x"}, "", "--collection applies to mongodb only"},
		{"database on sqlite", "sqlite:x.db", Options{Database: "x"}, "", "--database applies to mongodb only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.raw, tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse(%q) = %v", tt.raw, err)
				}
				if got.Kind != tt.kind {
					t.Fatalf("kind %q, want %q", got.Kind, tt.kind)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse(%q) error %v, want one containing %q", tt.raw, err, tt.wantErr)
			}
		})
	}
}

func TestParseErrorsNeverShowThePassword(t *testing.T) {
	for _, raw := range []string{
		"postgres://user:s3cretpw@host:notaport/db",
		"postgres://user:s3cretpw@host/db?sslmode=nonsense",
		"mongodb://user:s3cretpw@host",
		"mysql://user:s3cretpw@host:notaport/db",
		"mysql://user:s3cretpw@host/db?charset=\x00",
		"oracle://user:s3cretpw@host/db",
		"user:s3cretpw@host/db",
	} {
		_, err := Parse(raw, Options{})
		if err == nil {
			t.Fatalf("Parse(%q) accepted it", raw)
		}
		if strings.Contains(err.Error(), "s3cretpw") {
			t.Errorf("Parse(%q) error shows the password: %v", raw, err)
		}
	}
}

func TestConfigs(t *testing.T) {
	got, err := Parse("sqlite:///tmp/x.db", Options{Table: "events", KeepDelivered: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.SQLite.Path != "/tmp/x.db" || got.SQLite.Table != "events" || !got.SQLite.KeepDelivered {
		t.Errorf("sqlite config %+v", got.SQLite)
	}
	if got.Table() != "events" {
		t.Errorf("Table() = %q", got.Table())
	}
	got, err = Parse("postgres://localhost/db", Options{Schema: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Postgres.URL != "postgres://localhost/db" || got.Table() != "app.outbox" {
		t.Errorf("postgres config %+v, table %q", got.Postgres, got.Table())
	}
	got, err = Parse("mongodb://h1,h2/app?replicaSet=rs0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Mongo.URI.Reveal() != "mongodb://h1,h2/app?replicaSet=rs0" || got.Mongo.Database != "app" || got.Table() != "app.outbox" {
		t.Errorf("mongo config %+v, table %q", got.Mongo, got.Table())
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://user:pw@host:5432/db", "postgres://user:xxxxx@host:5432/db"},
		{"postgres://user@host/db", "postgres://user@host/db"},
		{"postgres://host/db?sslmode=require&password=pw", "postgres://host/db?sslmode=require&password=xxxxx"},
		{"postgres://host/db?sslpassword=pw&application_name=relay&new_option=x", "postgres://host/db?sslpassword=xxxxx&application_name=relay&new_option=xxxxx"},
		{"mongodb://AKID:pw@h/app?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:tok", "mongodb://AKID:xxxxx@h/app?authMechanism=MONGODB-AWS&authMechanismProperties=xxxxx"},
		{"mongodb://h/app?tlsCertificateKeyFilePassword=pw&tls=true", "mongodb://h/app?tlsCertificateKeyFilePassword=xxxxx&tls=true"},
		{"sqlite:/tmp/x.db?_pragma=key(pw)&mode=ro", "sqlite:/tmp/x.db?_pragma=xxxxx&mode=ro"},
		{"host=h password=pw", "(unrecognised store URL, hidden)"},
		{"mongodb://user:p%40ss@h1:27017,h2:27017/app?replicaSet=rs0", "mongodb://user:xxxxx@h1:27017,h2:27017/app?replicaSet=rs0"},
		{"mongodb://u:pw@host", "mongodb://u:xxxxx@host"},
		{"sqlite:/tmp/x.db", "sqlite:/tmp/x.db"},
		{"postgres://u:p@ss@host/db", "postgres://u:xxxxx@host/db"},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestScrub(t *testing.T) {
	raw := "postgres://user:p%40ssword@host/db?sslpassword=keyphrase"
	text := "failed: user:p%40ssword and p@ssword and keyphrase"
	got := Scrub(text, raw)
	for _, secret := range []string{"p%40ssword", "p@ssword", "keyphrase"} {
		if strings.Contains(got, secret) {
			t.Errorf("Scrub left %q in %q", secret, got)
		}
	}
	if Scrub("nothing here", "sqlite:x.db") != "nothing here" {
		t.Error("Scrub changed text without secrets")
	}
}

func TestPostgresMode(t *testing.T) {
	got, err := Parse("postgres://localhost/db", Options{PostgresMode: ModeWAL, WAL: postgres.WALConfig{Slot: "orders", LagAlarmBytes: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	if w := got.Postgres.WAL; w == nil || w.Slot != "orders" || w.LagAlarmBytes != 1<<20 {
		t.Fatalf("WAL mode config %+v", got.Postgres.WAL)
	}
	for _, mode := range []string{"", ModeTable} {
		got, err := Parse("postgres://localhost/db", Options{PostgresMode: mode})
		if err != nil || got.Postgres.WAL != nil {
			t.Fatalf("mode %q: WAL %+v, %v; want table mode", mode, got.Postgres.WAL, err)
		}
	}
	for _, tt := range []struct {
		raw   string
		opts  Options
		field string
	}{
		{"postgres://localhost/db", Options{PostgresMode: "logical"}, "PostgresMode"},
		{"sqlite:x.db", Options{PostgresMode: ModeWAL}, "PostgresMode"},
		{"postgres://localhost/db", Options{WAL: postgres.WALConfig{Slot: "s"}}, "WAL.Slot"},
		{"postgres://localhost/db", Options{PostgresMode: ModeTable, WAL: postgres.WALConfig{ReplicationURL: "postgres://h/db"}}, "WAL.ReplicationURL"},
		{"postgres://localhost/db", Options{WAL: postgres.WALConfig{LagAlarmBytes: 5}}, "WAL.LagAlarmBytes"},
		{"postgres://localhost/db", Options{PostgresMode: ModeWAL, WAL: postgres.WALConfig{Slot: "Upper"}}, "WAL.Slot"},
	} {
		_, err := Parse(tt.raw, tt.opts)
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field {
			t.Errorf("Parse(%q, %+v) = %v, want a config error of %s", tt.raw, tt.opts, err, tt.field)
		}
	}
}

func TestMySQL(t *testing.T) {
	got, err := Parse("mysql://relay:s3cretpw@127.0.0.1:3306/app?tls=true", Options{Table: "events", KeepDelivered: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != MySQL || got.MySQL.Table != "events" || !got.MySQL.KeepDelivered || got.Table() != "events" {
		t.Fatalf("got %+v", got)
	}
	if r := Redact("mysql://relay:s3cretpw@127.0.0.1:3306/app?tls=true&password=x2"); r != "mysql://relay:xxxxx@127.0.0.1:3306/app?tls=true&password=xxxxx" {
		t.Errorf("Redact = %q", r)
	}
	if _, err := Parse("mysql://relay@127.0.0.1/app", Options{Schema: "public"}); err == nil || !strings.Contains(err.Error(), "--schema applies to postgres only") {
		t.Errorf("--schema with mysql: %v", err)
	}
	if _, err := Parse("mysql://relay@127.0.0.1/app", Options{Table: "x; DROP TABLE y"}); err == nil {
		t.Error("an SQL-ish table name was accepted")
	}
}
