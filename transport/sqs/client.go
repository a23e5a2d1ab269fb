package sqs

import (
	"context"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/txoutbox/outbox"
)

// noRetry switches off the SDK's own retries, on every call, whoever built the client. The
// Transport contract leaves retrying to the relay and middleware/retry, so one policy governs
// it; SDK retries underneath would multiply attempts and stretch one Publish past its timeout.
func noRetry(o *awssqs.Options) {
	o.Retryer = aws.NopRetryer{}
	o.RetryMaxAttempts = 0
}

// newClient returns the SQS client c describes and, when the transport built the HTTP client
// itself, its http.Transport, whose idle connections Close closes.
func newClient(ctx context.Context, c Config) (*awssqs.Client, *http.Transport, error) {
	if c.Client != nil {
		return c.Client, nil, nil
	}
	if c.AWSConfig != nil {
		return awssqs.NewFromConfig(*c.AWSConfig, noRetry), nil, nil
	}

	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
	}
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	if c.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AccessKeyID.Reveal(), c.SecretAccessKey.Reveal(), c.SessionToken.Reveal())))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("sqs: load AWS config: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, nil, &outbox.ConfigError{Component: "sqs", Field: "Region",
			Problem: "is empty and the AWS environment names none (set Region, AWS_REGION or a profile region)"}
	}

	// The SDK's transport, as the environment configured it (AWS_CA_BUNDLE included), but owned
	// here so that Close can close its connections, and keeping enough idle connections for
	// Concurrency calls in flight (the SDK keeps 10 per host).
	var tr *http.Transport
	switch hc := awsCfg.HTTPClient.(type) {
	case nil:
		tr = awshttp.NewBuildableClient().GetTransport()
	case *awshttp.BuildableClient:
		tr = hc.GetTransport()
	}
	if tr != nil {
		tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, c.Concurrency)
		awsCfg.HTTPClient = &http.Client{
			Transport: tr,
			// SQS never redirects; following one would send signed requests elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	client := awssqs.NewFromConfig(awsCfg, func(o *awssqs.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
		noRetry(o)
	})
	return client, tr, nil
}
