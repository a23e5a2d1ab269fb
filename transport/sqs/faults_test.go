package sqs_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/sqs"
)

// faultServer answers SendMessageBatch the way SQS answers in situations fauxqs cannot produce
// (rejected credentials, throttling, server errors, partial failures). It is a test double for
// fault injection only, on loopback; everything else runs against fauxqs.
type faultServer struct {
	*httptest.Server
	calls    atomic.Int64
	inFlight atomic.Int64
	maxSeen  atomic.Int64
	mu       sync.Mutex
	answer   func(w http.ResponseWriter, ids []string)
	delay    time.Duration
	// lookups counts GetQueueUrl calls; lookupFails makes that many of them fail first.
	lookups     atomic.Int64
	lookupFails atomic.Int64
}

func newFaultServer(t *testing.T) *faultServer {
	f := &faultServer{}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *faultServer) serve(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		seen := f.maxSeen.Load()
		if n <= seen || f.maxSeen.CompareAndSwap(seen, n) {
			break
		}
	}
	var in struct {
		Entries   []struct{ Id string }
		QueueName string
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, "unexpected request", http.StatusBadRequest)
		return
	}
	switch r.Header.Get("X-Amz-Target") {
	case "AmazonSQS.GetQueueUrl":
		f.lookups.Add(1)
		time.Sleep(20 * time.Millisecond) // long enough for concurrent publishes to overlap
		if f.lookupFails.Add(-1) >= 0 {
			awsError(500, "com.amazonaws.sqs#InternalError", "", "lookup failed")(w, nil)
			return
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_ = json.NewEncoder(w).Encode(map[string]string{"QueueUrl": f.URL + "/000000000000/" + in.QueueName})
		return
	case "AmazonSQS.SendMessageBatch":
	default:
		http.Error(w, "unexpected request", http.StatusBadRequest)
		return
	}
	ids := make([]string, len(in.Entries))
	for i, e := range in.Entries {
		ids[i] = e.Id
	}
	f.mu.Lock()
	answer, delay := f.answer, f.delay
	f.mu.Unlock()
	time.Sleep(delay)
	answer(w, ids)
}

// awsError writes an error the way SQS's JSON protocol does.
func awsError(status int, code, queryCode, message string) func(http.ResponseWriter, []string) {
	return func(w http.ResponseWriter, _ []string) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		if queryCode != "" {
			w.Header().Set("x-amzn-query-error", queryCode)
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": message})
	}
}

func (f *faultServer) transport(t *testing.T, cfg sqs.Config) *sqs.Transport {
	cfg.Endpoint = f.URL
	cfg.QueueURL = f.URL + "/000000000000/q"
	return newTransport(t, cfg)
}

func succeed(w http.ResponseWriter, ids []string) {
	ok := make([]map[string]string, len(ids))
	for i, id := range ids {
		ok[i] = map[string]string{"Id": id, "MessageId": "m-" + id}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_ = json.NewEncoder(w).Encode(map[string]any{"Successful": ok, "Failed": []any{}})
}

// A queue name is looked up once, however many publishes need it at the same time; a failed
// lookup is not remembered.
func TestQueueNameResolvedOnce(t *testing.T) {
	f := newFaultServer(t)
	f.answer = succeed
	f.lookupFails.Store(1)
	tr := newTransport(t, sqs.Config{Connection: sqs.Connection{Endpoint: f.URL}, QueueURL: "orders"})

	err := tr.Publish(testCtx(t), prepared(t, messages(2, "T", "")...))
	if err == nil || outbox.IsPermanent(err) || !strings.Contains(err.Error(), "resolve queue orders") {
		t.Fatalf("publish with a failing lookup = %v, want a retryable error naming the queue", err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := tr.Publish(testCtx(t), prepared(t, messages(2, "T", "")...)); err != nil {
				t.Errorf("publish: %v", err)
			}
		})
	}
	wg.Wait()
	if n := f.lookups.Load(); n != 2 {
		t.Errorf("%d GetQueueUrl calls, want 2 (the failed one, then one for all)", n)
	}
}

// Whole-call errors: classified, clear, and never retried by the SDK (one request each).
func TestCallErrorsAreClassifiedAndNotRetried(t *testing.T) {
	for _, c := range []struct {
		name        string
		answer      func(http.ResponseWriter, []string)
		unavailable bool // the destination is blamed: the relay pauses
		want        string
	}{
		{"InvalidClientTokenId", awsError(403, "com.amazon.coral.service#UnrecognizedClientException", "InvalidClientTokenId;Sender",
			"The security token included in the request is invalid."), true, "rejected the credentials"},
		{"SignatureDoesNotMatch", awsError(403, "com.amazon.coral.service#SignatureDoesNotMatch", "",
			"The request signature we calculated does not match the signature you provided."), true, "rejected the credentials"},
		{"AccessDenied", awsError(403, "com.amazon.coral.service#AccessDeniedException", "AccessDenied;Sender",
			"User is not authorized to perform: sqs:sendmessage"), true, "permissions"},
		{"Throttled", awsError(400, "com.amazonaws.sqs#RequestThrottled", "RequestThrottled;Sender", "Rate exceeded"), true, "RequestThrottled"},
		{"ServerError", awsError(500, "com.amazonaws.sqs#InternalError", "", "We encountered an internal error."), true, "500"},
		{"Unavailable", func(w http.ResponseWriter, _ []string) { http.Error(w, "unavailable", http.StatusServiceUnavailable) }, true, "503"},
		{"QueueDoesNotExist", awsError(400, "com.amazonaws.sqs#QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue;Sender",
			"The specified queue does not exist."), true, "does not exist"},
		{"MalformedBatch", awsError(400, "com.amazonaws.sqs#BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct;Sender",
			"Two or more batch entries in the request have the same Id."), false, "BatchEntryIdsNotDistinct"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFaultServer(t)
			f.answer = c.answer
			tr := f.transport(t, sqs.Config{})
			err := publishWithin(t, tr, 5*time.Second, prepared(t, messages(3, "T", "")...))
			var be *outbox.BatchError
			switch {
			case err == nil:
				t.Fatal("publish succeeded")
			case errors.As(err, &be):
				t.Fatalf("publish = %v, want one error for the whole call", err)
			case outbox.IsPermanent(err):
				t.Errorf("a whole-call error blaming no message is permanent: %v", err)
			case outbox.IsUnavailable(err) != c.unavailable:
				t.Errorf("unavailable = %t, want %t: %v", outbox.IsUnavailable(err), c.unavailable, err)
			case !strings.Contains(err.Error(), c.want):
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if n := f.calls.Load(); n != 1 {
				t.Errorf("%d requests, want 1: the transport must not retry", n)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

// Per-entry failures are mapped back to message IDs: sender faults and invalid parameters are
// permanent, the rest retryable, and an entry SQS did not answer fails retryably.
func TestEntryFailuresMapToMessages(t *testing.T) {
	f := newFaultServer(t)
	f.answer = func(w http.ResponseWriter, ids []string) {
		type fail struct {
			Id, Code, Message string
			SenderFault       bool
		}
		out := struct {
			Successful []map[string]string
			Failed     []fail
		}{Successful: []map[string]string{}, Failed: []fail{}}
		for i, id := range ids {
			switch i {
			case 1:
				out.Failed = append(out.Failed, fail{id, "InvalidParameterValue", "Value for parameter is invalid", true})
			case 2:
				out.Failed = append(out.Failed, fail{id, "InternalError", "try again", false})
			case 3:
				out.Failed = append(out.Failed, fail{id, "RequestThrottled", "slow down", true})
			case 4:
				out.Failed = append(out.Failed, fail{id, "SomethingNew", "not the sender's fault", false})
			case 5: // no answer at all
			default:
				out.Successful = append(out.Successful, map[string]string{"Id": id, "MessageId": "m-" + id})
			}
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_ = json.NewEncoder(w).Encode(out)
	}
	tr := f.transport(t, sqs.Config{})
	in := prepared(t, messages(7, "T", "")...)
	err := tr.Publish(testCtx(t), in)
	var be *outbox.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("publish = %v, want a *outbox.BatchError", err)
	}
	want := map[string]bool{in[1].ID: true, in[2].ID: false, in[3].ID: false, in[4].ID: false, in[5].ID: false}
	if len(be.Failed) != len(want) {
		t.Fatalf("failures %v, want messages 1 to 5", be)
	}
	for id, permanent := range want {
		if e := be.Failed[id]; e == nil || outbox.IsPermanent(e) != permanent {
			t.Errorf("message %s: %v, want permanent=%t", id, e, permanent)
		}
	}
	if !strings.Contains(be.Failed[in[1].ID].Error(), "InvalidParameterValue") {
		t.Errorf("error %q does not carry the SQS code", be.Failed[in[1].ID])
	}
}

// At most Concurrency SendMessageBatch calls are in flight, however many batches a Publish
// call (or several) has.
func TestConcurrencyBound(t *testing.T) {
	f := newFaultServer(t)
	f.delay = 20 * time.Millisecond
	f.answer = succeed
	tr := f.transport(t, sqs.Config{Concurrency: 3})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := tr.Publish(testCtx(t), prepared(t, messages(100, "T", "")...)); err != nil {
				t.Errorf("publish: %v", err)
			}
		})
	}
	wg.Wait()
	if got := f.calls.Load(); got != 20 {
		t.Errorf("%d calls for 200 messages, want 20", got)
	}
	if got := f.maxSeen.Load(); got > 3 || got < 2 {
		t.Errorf("%d calls in flight at most, want 3 (at least 2)", got)
	}
}

// Batches are cut at MaxBatchBytes as well as at 10 entries, and with one slot they go out in
// order, oldest messages first.
func TestBatchesCutAtMaxBatchBytes(t *testing.T) {
	f := newFaultServer(t)
	var mu sync.Mutex
	var sizes []int
	f.answer = func(w http.ResponseWriter, ids []string) {
		mu.Lock()
		sizes = append(sizes, len(ids))
		mu.Unlock()
		succeed(w, ids)
	}
	// Each message: envelope of about 560 bytes plus outbox.type (11+6+1): three fit in 2048.
	tr := f.transport(t, sqs.Config{MaxMessageBytes: 1024, MaxBatchBytes: 2048, Concurrency: 1})
	in := messages(10, "T", "")
	for _, m := range in {
		m.Payload = json.RawMessage(`"` + strings.Repeat("p", 400) + `"`)
	}
	if err := tr.Publish(testCtx(t), prepared(t, in...)); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sizes) != "[3 3 3 1]" {
		t.Errorf("batches of %v entries, want [3 3 3 1]", sizes)
	}
}

// A whole call refused because of one bad entry (the request SQS calls too long, an invalid
// parameter) is sent again one entry per call: the bad message fails permanently, the others
// are published.
func TestOneBadEntryDoesNotTakeTheBatchDown(t *testing.T) {
	f := newFaultServer(t)
	tooLong := awsError(400, "com.amazonaws.sqs#InvalidParameterValue", "InvalidParameterValue;Sender", "Invalid characters in the message body.")
	var calls atomic.Int64
	f.answer = func(w http.ResponseWriter, ids []string) {
		calls.Add(1)
		if len(ids) > 1 || ids[0] == "1" { // the batch, and the bad entry (index 1) alone
			tooLong(w, ids)
			return
		}
		succeed(w, ids)
	}
	tr := f.transport(t, sqs.Config{})
	msgs := prepared(t, messages(3, "T", "")...)
	err := publishWithin(t, tr, 5*time.Second, msgs)
	var be *outbox.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || be.Failed[msgs[1].ID] == nil {
		t.Fatalf("publish = %v, want a *outbox.BatchError naming only the bad message", err)
	}
	if !outbox.IsPermanent(be.Failed[msgs[1].ID]) {
		t.Errorf("the bad message's error is not permanent: %v", be.Failed[msgs[1].ID])
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("%d calls, want 4 (the batch, then each entry alone)", n)
	}
}
