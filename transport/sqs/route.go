package sqs

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/txoutbox/outbox"
)

// queue is a resolved destination.
type queue struct {
	url  string
	fifo bool
}

// router picks each message's queue and turns queue names into URLs, asking SQS once per name.
type router struct {
	client *awssqs.Client
	routes map[string]string
	route  func(*outbox.Message) string
	def    string

	mu       sync.Mutex
	resolved map[string]*resolution // queue name -> URL lookup, done or in flight
}

// resolution is one GetQueueUrl lookup that concurrent publishes share.
type resolution struct {
	done chan struct{}
	q    queue
	err  error
}

func newRouter(client *awssqs.Client, c Config) *router {
	return &router{client: client, routes: c.Routes, route: c.Route, def: c.QueueURL, resolved: map[string]*resolution{}}
}

// destination returns the queue URL or name m goes to.
func (r *router) destination(m *outbox.Message) (string, error) {
	dest := r.routes[m.Type]
	if dest == "" && r.route != nil {
		dest = r.route(m)
		if dest != "" {
			if err := checkQueue(dest); err != nil {
				return "", outbox.Permanent(fmt.Errorf("sqs: message %s: Route returned a bad queue: %v", m.ID, err))
			}
		}
	}
	if dest == "" {
		dest = r.def
	}
	if dest == "" {
		return "", outbox.Permanent(fmt.Errorf("sqs: message %s: no queue for type %q (no route claims it and QueueURL is empty)", m.ID, m.Type))
	}
	return dest, nil
}

// resolve turns a queue URL or name into a queue. Names are looked up with GetQueueUrl once and
// cached; a failed lookup is not cached, so the next publish asks again.
func (r *router) resolve(ctx context.Context, dest string) (queue, error) {
	if strings.Contains(dest, "://") {
		return queue{url: dest, fifo: isFIFO(dest)}, nil
	}
	r.mu.Lock()
	res, ok := r.resolved[dest]
	if !ok {
		res = &resolution{done: make(chan struct{})}
		r.resolved[dest] = res
	}
	r.mu.Unlock()

	if ok {
		select {
		case <-res.done:
			return res.q, res.err
		case <-ctx.Done():
			return queue{}, fmt.Errorf("sqs: resolve queue %s: %w", dest, ctx.Err())
		}
	}

	out, err := r.client.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(dest)}, noRetry)
	if err != nil {
		res.err = classify(fmt.Sprintf("resolve queue %s", dest), err)
		r.mu.Lock()
		delete(r.resolved, dest)
		r.mu.Unlock()
	} else {
		u := aws.ToString(out.QueueUrl)
		res.q = queue{url: u, fifo: isFIFO(u)}
	}
	close(res.done)
	return res.q, res.err
}

// isFIFO reports whether a queue URL or name names a FIFO queue, which SQS requires to end in
// .fifo.
func isFIFO(q string) bool {
	if u, err := url.Parse(q); err == nil && u.Path != "" {
		q = u.Path
	}
	return strings.HasSuffix(strings.TrimRight(q, "/"), ".fifo")
}
