package sqs

import (
	"fmt"
	"regexp"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/txoutbox/outbox"
)

// Connection is how a client reaches SQS: the settings a Transport (Config) and a Consumer
// (ConsumerConfig) share, embedded in both. Give it credentials in one of three ways: nothing
// (the default AWS credential chain: environment, shared profile, SSO, IAM role), the origin
// package's explicit Region / AccessKeyID / SecretAccessKey (/ SessionToken) / Endpoint, or your
// own AWSConfig or Client. The static credentials are outbox.Secret fields: they never print or
// marshal, whatever the verb.
type Connection struct {
	// Region is the AWS region, e.g. eu-west-1. Default: the region of the AWS environment
	// (AWS_REGION, the shared profile). Not allowed with AWSConfig or Client.
	Region string `json:",omitempty"`
	// AccessKeyID and SecretAccessKey are static credentials, given both or neither. Default:
	// the AWS default credential chain. Not allowed with AWSConfig or Client.
	AccessKeyID     outbox.Secret `json:",omitempty"`
	SecretAccessKey outbox.Secret `json:",omitempty"`
	// SessionToken goes with temporary static credentials. Default none.
	SessionToken outbox.Secret `json:",omitempty"`
	// Endpoint overrides the SQS endpoint, e.g. http://127.0.0.1:4566 for a local emulator.
	// Default: the AWS endpoint of Region. Not allowed with AWSConfig or Client.
	Endpoint string `json:",omitempty"`

	// AWSConfig is your own AWS configuration; the client is built from it. Default: built from
	// the fields above. It holds credentials, so it is never marshalled (and prints as a
	// pointer).
	AWSConfig *aws.Config `json:"-"`
	// Client is your own SQS client, used as it is except for retries (see Transport). Default:
	// a client built from AWSConfig or the fields above. Close does not close it.
	Client *awssqs.Client `json:"-"`
}

// validate names the first wrong field. It never repeats a secret.
func (c Connection) validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "sqs", Field: field, Problem: problem}
	}
	own := c.Client != nil || c.AWSConfig != nil
	switch {
	case c.Client != nil && c.AWSConfig != nil:
		return bad("AWSConfig", "is set together with Client (give one)")
	case own && c.Region != "":
		return bad("Region", "is set together with "+c.ownName()+" (configure the region there)")
	case own && (c.AccessKeyID != "" || c.SecretAccessKey != "" || c.SessionToken != ""):
		return bad("AccessKeyID", "credentials are set together with "+c.ownName()+" (configure credentials there)")
	case own && c.Endpoint != "":
		return bad("Endpoint", "is set together with "+c.ownName()+" (set BaseEndpoint there)")
	case c.AccessKeyID != "" && c.SecretAccessKey == "":
		return bad("SecretAccessKey", "is empty while AccessKeyID is set")
	case c.AccessKeyID == "" && c.SecretAccessKey != "":
		return bad("AccessKeyID", "is empty while SecretAccessKey is set")
	case c.SessionToken != "" && c.AccessKeyID == "":
		return bad("SessionToken", "is set without AccessKeyID and SecretAccessKey")
	case c.Region != "" && !regionName.MatchString(c.Region):
		return bad("Region", fmt.Sprintf("%q is not a region name like eu-west-1", c.Region))
	}
	if c.Endpoint != "" {
		if err := checkEndpoint(c.Endpoint); err != nil {
			return bad("Endpoint", err.Error())
		}
	}
	return nil
}

func (c Connection) ownName() string {
	if c.Client != nil {
		return "Client"
	}
	return "AWSConfig"
}

// regionName is loose on purpose: emulators accept made-up regions such as "local".
var regionName = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
