package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

// User is the business row. Its USER_CREATED event carries it as the result.
type User struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Server is the service's HTTP server.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Addr is where the server listens, once started.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// newServer serves POST /users. OnStart listens before returning, so a taken port fails the
// start, and serves in a goroutine; OnStop shuts down and waits for requests in flight.
func newServer(lc fx.Lifecycle, cfg Config, store *postgres.Store, log *zap.Logger) *Server {
	mux := http.NewServeMux()
	mux.Handle("POST /users", createUser(store, usersTable(cfg), log))
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	done := make(chan struct{})
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", cfg.Listen)
			if err != nil {
				return err
			}
			s.ln = ln
			go func() {
				defer close(done)
				if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
					log.Error("http server failed", zap.Error(err))
				}
			}()
			log.Info("listening", zap.String("addr", ln.Addr().String()))
			return nil
		},
		OnStop: func(ctx context.Context) error {
			err := s.srv.Shutdown(ctx)
			<-done
			return err
		},
	})
	return s
}

// createUser inserts a user and its USER_CREATED event in one transaction: both exist, or
// neither does. The relay publishes the event after the commit.
func createUser(store *postgres.Store, users string, log *zap.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Name, Email string }
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&in); err != nil || in.Name == "" || in.Email == "" {
			http.Error(w, `want a JSON body {"name": "...", "email": "..."}`, http.StatusBadRequest)
			return
		}
		event, err := outbox.NewMessage("USER_CREATED", map[string]string{"name": in.Name, "email": in.Email})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		user, err := postgres.Execute(r.Context(), store, func(ctx context.Context, tx pgx.Tx) (User, error) {
			u := User{Name: in.Name, Email: in.Email}
			err := tx.QueryRow(ctx, "INSERT INTO "+users+" (name, email) VALUES ($1, $2) RETURNING id", u.Name, u.Email).Scan(&u.ID)
			return u, err
		}, event)
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "23505": // unique_violation
			http.Error(w, "a user with this email exists", http.StatusConflict)
			return
		case err != nil:
			log.Error("create user", zap.Error(err))
			http.Error(w, "could not create the user", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(struct {
			User
			EventID string `json:"event_id"`
		}{user, event.ID})
	})
}
