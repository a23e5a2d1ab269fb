package inbox

import (
	"errors"
	"net/http"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
)

// dropDeletes is an HTTP transport for an SQS client that loses the first n DeleteMessageBatch
// requests before they reach SQS, as when a consumer dies between its commit and its delete or
// the network drops the call: those messages, handled and committed, are delivered again.
type dropDeletes struct {
	next    http.RoundTripper
	n       int64
	dropped atomic.Int64
}

func (d *dropDeletes) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("X-Amz-Target") == "AmazonSQS.DeleteMessageBatch" && d.dropped.Add(1) <= d.n {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return nil, errors.New("delete lost before it reached SQS (injected)")
	}
	return d.next.RoundTrip(r)
}

// CloseIdleConnections lets the client close the connections of the transport underneath.
func (d *dropDeletes) CloseIdleConnections() { d.next.(*http.Transport).CloseIdleConnections() }

func (d *dropDeletes) count() int64 { return min(d.dropped.Load(), d.n) }

// dropDeletesClient returns an SQS client of the test server whose first n deletes are lost.
func dropDeletesClient(n int64) (*awssqs.Client, *dropDeletes) {
	d := &dropDeletes{next: http.DefaultTransport.(*http.Transport).Clone(), n: n}
	client := awssqs.NewFromConfig(aws.Config{
		Region:      testRegion,
		Credentials: credentials.NewStaticCredentialsProvider(testKey, testSecret, ""),
		HTTPClient:  &http.Client{Transport: d},
	}, func(o *awssqs.Options) { o.BaseEndpoint = aws.String(sqsEndpoint()) })
	return client, d
}
