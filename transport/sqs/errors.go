package sqs

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/txoutbox/outbox"
)

// SQS answers with its JSON error names, or, through its query-compatibility header, with the
// older AWS.SimpleQueueService.* names the SDK then reports; both spellings are listed. Matching
// codes, not only typed errors, is deliberate: depending on the operation and the SDK version a
// missing queue has surfaced as an untyped error with the old code (aws/aws-sdk-go-v2#1319,
// #2348).

// Every SQS error is charged to one of three parties:
//   - the destination (outageCodes): the queue is missing or briefly deleted, the credentials or
//     their permissions are refused, the queue's KMS key is unavailable, SQS throttles or fails.
//     None says anything about a message, so the error is marked outbox.Unavailable: the relay
//     pauses and probes, and charges no attempt. A deploy that creates the queue late, a
//     rotated key or an IAM fix then lets everything flow again, and nothing is dead-lettered.
//   - a message (messageCodes): its body, attributes or size. A single message gets
//     outbox.Permanent; a whole SendMessageBatch call refused this way is sent again one entry per
//     call, so only the bad message fails and the others go out.
//   - the call itself (anything else, e.g. a malformed batch): an ordinary failure, retried with
//     the message's backoff and bounded by MaxAttempts.

// outageCodes blame the destination.
var outageCodes = map[string]bool{
	"QueueDoesNotExist":                           true,
	"AWS.SimpleQueueService.NonExistentQueue":     true,
	"QueueDeletedRecently":                        true,
	"AWS.SimpleQueueService.QueueDeletedRecently": true,
	"InvalidAddress":                              true,
	"UnsupportedOperation":                        true,
	"AWS.SimpleQueueService.UnsupportedOperation": true,
	"InvalidClientTokenId":                        true,
	"UnrecognizedClientException":                 true,
	"SignatureDoesNotMatch":                       true,
	"IncompleteSignature":                         true,
	"MissingAuthenticationToken":                  true,
	"InvalidSecurity":                             true,
	"AccessDenied":                                true,
	"AccessDeniedException":                       true,
	"ExpiredToken":                                true,
	"RequestExpired":                              true,
	"RequestThrottled":                            true,
	"ThrottlingException":                         true,
	"AWS.SimpleQueueService.Throttled":            true,
	"OverLimit":                                   true,
	"KmsThrottled":                                true,
	"KMS.ThrottlingException":                     true,
	"KmsAccessDenied":                             true,
	"KMS.AccessDeniedException":                   true,
	"KmsDisabled":                                 true,
	"KMS.DisabledException":                       true,
	"KmsInvalidState":                             true,
	"KMS.InvalidStateException":                   true,
	"KmsNotFound":                                 true,
	"KMS.NotFoundException":                       true,
	"KmsOptInRequired":                            true,
	"KMS.OptInRequired":                           true,
	"KmsInvalidKeyUsage":                          true,
	"KMS.InvalidKeyUsageException":                true,
	"InternalError":                               true,
	"InternalFailure":                             true,
	"ServiceUnavailable":                          true,
}

// messageCodes blame a message.
var messageCodes = map[string]bool{
	"InvalidMessageContents":                     true,
	"InvalidParameterValue":                      true,
	"InvalidAttributeName":                       true,
	"InvalidAttributeValue":                      true,
	"MessageTooLong":                             true,
	"BatchRequestTooLong":                        true,
	"AWS.SimpleQueueService.BatchRequestTooLong": true,
	"MissingParameter":                           true,
}

// authCodes are the credential and permission errors among outageCodes: their errors say what
// to check.
var authCodes = map[string]bool{
	"InvalidClientTokenId":        true,
	"UnrecognizedClientException": true,
	"SignatureDoesNotMatch":       true,
	"IncompleteSignature":         true,
	"MissingAuthenticationToken":  true,
	"InvalidSecurity":             true,
	"AccessDenied":                true,
	"AccessDeniedException":       true,
	"ExpiredToken":                true,
	"RequestExpired":              true,
	"KmsAccessDenied":             true,
	"KMS.AccessDeniedException":   true,
}

// classify wraps a failed call's error with what was being done and marks whom it blames:
// outbox.Unavailable for the destination (including unreachable endpoints, refused connections
// and server errors without a code), outbox.Permanent for a message. Cancellation and deadlines
// stay unmarked: the relay knows whether it stopped or its publish ran out of time.
func classify(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("sqs: %s: %w", op, err)
	}
	var qdne *types.QueueDoesNotExist
	if errors.As(err, &qdne) {
		return outbox.Unavailable(fmt.Errorf("sqs: %s: the queue does not exist (yet?): %w", op, err))
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		code := api.ErrorCode()
		switch {
		case authCodes[code]:
			return outbox.Unavailable(fmt.Errorf("sqs: %s: AWS rejected the credentials or their permissions (check the keys, role and queue policy): %w", op, err))
		case outageCodes[code]:
			return outbox.Unavailable(fmt.Errorf("sqs: %s: %w", op, err))
		case messageCodes[code]:
			return outbox.Permanent(fmt.Errorf("sqs: %s: %w", op, err))
		}
		var status interface{ HTTPStatusCode() int }
		if errors.As(err, &status) && status.HTTPStatusCode() >= 500 {
			return outbox.Unavailable(fmt.Errorf("sqs: %s: %w", op, err))
		}
		return fmt.Errorf("sqs: %s: %w", op, err)
	}
	// No answer from SQS at all: the endpoint is unreachable, refused or reset the connection.
	return outbox.Unavailable(fmt.Errorf("sqs: %s: %w", op, err))
}

// blamesMessages reports whether a whole call's error blames what it carried.
func blamesMessages(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && messageCodes[api.ErrorCode()]
}

// entryError turns one failed entry of a SendMessageBatch answer into the message's error:
// unavailable when SQS blames itself or the queue (throttling, KMS, internal errors),
// permanent when it blames the message (SenderFault, invalid parameters), retryable otherwise.
func entryError(queueURL string, e types.BatchResultErrorEntry) error {
	code := aws.ToString(e.Code)
	err := fmt.Errorf("sqs: queue %s rejected the message: %s: %s", queueURL, code, aws.ToString(e.Message))
	switch {
	case outageCodes[code]:
		return outbox.Unavailable(err)
	case e.SenderFault || messageCodes[code]:
		return outbox.Permanent(err)
	}
	return err
}
