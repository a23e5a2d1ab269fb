package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	driver "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox/outboxtest"
)

// The MongoDB commands run against FerretDB (scripts/services/ferretdb), which answers what
// migrate, status and dead need; the relay itself needs a replica set (see store/mongo).
func TestMongoCommandsOnFerretDB(t *testing.T) {
	base := strings.TrimSuffix(outboxtest.ServiceAddr("OUTBOX_TEST_FERRETDB_URI", "mongodb://127.0.0.1:27017/"), "/")
	db := randomName("outbox_cli_")
	url := base + "/" + db
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := driver.Connect(options.Client().ApplyURI(base).SetConnectTimeout(3 * time.Second))
	if err == nil {
		pingCtx, cancelPing := context.WithTimeout(ctx, 3*time.Second)
		err = client.Ping(pingCtx, nil)
		cancelPing()
	}
	if err != nil {
		if client != nil {
			_ = client.Disconnect(ctx)
		}
		outboxtest.NeedService(t, "FerretDB (scripts/services/ferretdb start) at "+base, err)
	}
	defer func() {
		_ = client.Database(db).Drop(context.Background())
		_ = client.Disconnect(context.Background())
	}()

	if code, stdout, stderr := runCLI(t, nil, "migrate", "--store", url, "--collection", "events"); code != 0 || !strings.Contains(stdout, db+".events") {
		t.Fatalf("migrate: exit %d: %s%s", code, stdout, stderr)
	}
	code, stdout, stderr := runCLI(t, nil, "status", "--store", url, "--collection", "events", "--json")
	var r statusReport
	if err := json.Unmarshal([]byte(stdout), &r); code != 0 || err != nil {
		t.Fatalf("status: exit %d, %v: %s%s", code, err, stdout, stderr)
	}
	if r.Pending != 0 || r.Dead != 0 || r.OldestPending != nil {
		t.Errorf("status of an empty collection: %+v", r)
	}
	if code, stdout, _ := runCLI(t, nil, "dead", "list", "--store", url, "--collection", "events"); code != 0 || !strings.Contains(stdout, "no dead letters match") {
		t.Errorf("dead list: exit %d: %s", code, stdout)
	}
}
