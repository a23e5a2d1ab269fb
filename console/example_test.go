package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/console"
	"github.com/txoutbox/outbox/store/memory"
)

// The console mounted under /outbox/ in the service's own mux; its API reads the counts.
func ExampleNew() {
	store := memory.New()
	msg, _ := outbox.NewMessage("USER_CREATED", map[string]string{"email": "ada@example.com"})
	_ = store.Add(context.Background(), msg)

	h, err := console.New(console.Config{
		Outboxes: []console.Outbox{{Name: "users", Store: store}},
		Token:    outbox.Secret("a-long-random-token-from-the-environment"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/outbox/", http.StripPrefix("/outbox", h))
	srv := httptest.NewServer(mux) // in a service: http.ListenAndServe("127.0.0.1:8081", mux)
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL + "/outbox/api/outboxes/users")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.Contains(line, `"pending"`) || strings.Contains(line, `"dead"`) {
			fmt.Println(strings.TrimSpace(line))
		}
	}
	// Output:
	// "pending": 1,
	// "dead": 0,
}
