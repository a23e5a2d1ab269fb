package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/sqlite"
)

// Execute writes a business row and its event in one transaction; the event's Result is the
// row fn returned.
func ExampleExecute() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "outbox-example-")
	defer os.RemoveAll(dir)

	store, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(dir, "app.db")})
	if err != nil {
		panic(err)
	}
	defer store.Close()
	if err := store.EnsureSchema(ctx); err != nil {
		panic(err)
	}
	if _, err := store.DB().ExecContext(ctx, `CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)`); err != nil {
		panic(err)
	}

	type User struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	event := &outbox.Message{Type: "USER_CREATED", Payload: json.RawMessage(`{"name":"Ada"}`)}
	user, err := sqlite.Execute(ctx, store, func(ctx context.Context, tx *sql.Tx) (User, error) {
		u := User{Name: "Ada"}
		err := tx.QueryRowContext(ctx, `INSERT INTO users (name) VALUES (?) RETURNING id`, u.Name).Scan(&u.ID)
		return u, err
	}, event)
	if err != nil {
		panic(err)
	}
	fmt.Println("created user", user.ID)

	// What a relay would claim and publish.
	msgs, err := store.Claim(ctx, outbox.ClaimRequest{Token: "example", Limit: 10, Lease: time.Minute})
	if err != nil {
		panic(err)
	}
	for _, m := range msgs {
		fmt.Printf("%s payload=%s result=%s\n", m.Type, m.Payload, m.Result)
	}
	// Output:
	// created user 1
	// USER_CREATED payload={"name":"Ada"} result={"id":1,"name":"Ada"}
}
