package mongo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

func TestConfigValidate(t *testing.T) {
	client := &mongo.Client{} // never used: Validate only checks that it is set
	valid := Config{URI: "mongodb://127.0.0.1:27017/app"}
	cases := []struct {
		name  string
		cfg   func(c Config) Config
		field string
	}{
		{"NoURIOrClient", func(c Config) Config { c.URI = ""; return c }, "URI"},
		{"URIAndClient", func(c Config) Config { c.Client = client; return c }, "URI"},
		{"URIScheme", func(c Config) Config { c.URI = "http://host/app"; return c }, "URI"},
		{"NoDatabase", func(c Config) Config { c.URI = "mongodb://127.0.0.1:27017/"; return c }, "Database"},
		{"ClientWithoutDatabase", func(c Config) Config { c.URI = ""; c.Client = client; return c }, "Database"},
		{"DatabaseWithDot", func(c Config) Config { c.Database = "app.x"; return c }, "Database"},
		{"DatabaseInjection", func(c Config) Config { c.Database = "app;db.dropDatabase()"; return c }, "Database"},
		{"CollectionWithDollar", func(c Config) Config { c.Collection = "$cmd"; return c }, "Collection"},
		{"CollectionStartsWithDigit", func(c Config) Config { c.Collection = "1outbox"; return c }, "Collection"},
		{"CollectionTooLong", func(c Config) Config { c.Collection = "o" + strings.Repeat("x", 63); return c }, "Collection"},
		{"NegativeTTL", func(c Config) Config { c.KeepDelivered = true; c.DeliveredTTL = -time.Second; return c }, "DeliveredTTL"},
		{"TTLWithoutKeep", func(c Config) Config { c.DeliveredTTL = time.Hour; return c }, "DeliveredTTL"},
		{"TTLUnderASecond", func(c Config) Config { c.KeepDelivered = true; c.DeliveredTTL = time.Millisecond; return c }, "DeliveredTTL"},
		{"NegativePayload", func(c Config) Config { c.MaxPayloadBytes = -1; return c }, "MaxPayloadBytes"},
		{"HugePayload", func(c Config) Config { c.MaxPayloadBytes = 16 << 20; return c }, "MaxPayloadBytes"},
		{"NegativeTimeout", func(c Config) Config { c.ConnectTimeout = -time.Second; return c }, "ConnectTimeout"},
		{"NilHook", func(c Config) Config { c.WriteHooks = []backend.WriteHook{nil}; return c }, "WriteHooks[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg(valid).Validate()
			var ce *outbox.ConfigError
			if !errors.As(err, &ce) || ce.Field != c.field || ce.Component != "mongo" {
				t.Fatalf("Validate = %v, want a mongo ConfigError naming %s", err, c.field)
			}
			if !errors.Is(err, outbox.ErrInvalidConfig) {
				t.Fatalf("%v does not match outbox.ErrInvalidConfig", err)
			}
			if _, err := New(context.Background(), c.cfg(valid)); !errors.As(err, &ce) {
				t.Fatalf("New accepted an invalid config: %v", err)
			}
		})
	}
	t.Run("ValidForms", func(t *testing.T) {
		for _, cfg := range []Config{
			valid,
			{URI: "mongodb://127.0.0.1:27017", Database: "app"},
			{URI: "mongodb+srv://cluster.example.com/app?retryWrites=true"},
			{Client: client, Database: "app", Collection: "events_v2", KeepDelivered: true, DeliveredTTL: time.Hour},
			{URI: "mongodb://h/app", MaxPayloadBytes: 15 << 20, WriteHooks: []backend.WriteHook{func(context.Context, *outbox.Message) {}}},
		} {
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate(%+v) = %v", cfg, err)
			}
		}
	})
}

func TestConfigDefaults(t *testing.T) {
	c := Config{URI: "mongodb://a:27017,b:27017/shop?replicaSet=rs0"}.withDefaults()
	if c.Database != "shop" || c.Collection != "outbox" || c.MaxPayloadBytes != outbox.DefaultMaxPayloadBytes || c.ConnectTimeout != 10*time.Second {
		t.Fatalf("defaults = %+v", c)
	}
	if c := (Config{URI: "mongodb://h/shop", Database: "other"}).withDefaults(); c.Database != "other" {
		t.Fatalf("an explicit Database was replaced by the URI's: %q", c.Database)
	}
}

func TestCredentialsNeverShown(t *testing.T) {
	const secret = "s3cr%2Ft" // URL-escaped in the URI; "s3cr/t" once unescaped
	uri := "mongodb://app:" + secret + "@db1:27017,db2:27017/shop?authSource=admin"
	cfg := Config{URI: URI(uri)}
	for _, text := range []string{cfg.URI.String(), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), redactURI(uri)} {
		if strings.Contains(text, "s3cr") {
			t.Fatalf("the password shows in %q", text)
		}
		if !strings.Contains(text, "app:xxxxx@db1:27017,db2:27017/shop") {
			t.Fatalf("the redacted form lost the rest of the URI: %q", text)
		}
	}
	if got := redactURI("mongodb://db1:27017/shop"); got != "mongodb://db1:27017/shop" {
		t.Fatalf("a URI without a password was changed: %q", got)
	}
	cause := errors.New(`dial failed for mongodb://app:s3cr%2Ft@db1 (password "s3cr/t")`)
	err := redactError(cause, URI(uri))
	if strings.Contains(err.Error(), "s3cr") {
		t.Fatalf("the password shows in the error %q", err)
	}
	if !errors.Is(err, cause) {
		t.Fatal("redaction broke errors.Is")
	}

	// A failed connection names the server, never the password.
	_, err = New(context.Background(), Config{URI: "mongodb://app:" + secret + "@127.0.0.1:1/shop?serverSelectionTimeoutMS=200", ConnectTimeout: 500 * time.Millisecond})
	if err == nil {
		t.Fatal("New connected to a closed port")
	}
	if strings.Contains(err.Error(), "s3cr") || !strings.HasPrefix(err.Error(), "mongo: ") {
		t.Fatalf("connection error %q shows the password or lacks the package prefix", err)
	}
}
