package sqs

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/txoutbox/outbox/core"
)

// SQS answers with its JSON error names, or, through its query-compatibility header, with the
// older AWS.SimpleQueueService.* names the SDK then reports; both spellings are listed. Matching
// codes, not only typed errors, is deliberate: depending on the operation and the SDK version a
// missing queue has surfaced as an untyped error with the old code (aws/aws-sdk-go-v2#1319,
// #2348).

// permanentCodes are whole-call errors no retry can fix: the queue does not exist, or the
// request itself is invalid. Every message of the call is dead-lettered at once.
var permanentCodes = map[string]bool{
	"QueueDoesNotExist":                                   true,
	"AWS.SimpleQueueService.NonExistentQueue":             true,
	"QueueDeletedRecently":                                true,
	"AWS.SimpleQueueService.QueueDeletedRecently":         true,
	"InvalidAddress":                                      true,
	"InvalidParameterValue":                               true,
	"MissingParameter":                                    true,
	"InvalidMessageContents":                              true,
	"InvalidAttributeName":                                true,
	"InvalidAttributeValue":                               true,
	"UnsupportedOperation":                                true,
	"AWS.SimpleQueueService.UnsupportedOperation":         true,
	"InvalidBatchEntryId":                                 true,
	"AWS.SimpleQueueService.InvalidBatchEntryId":          true,
	"BatchEntryIdsNotDistinct":                            true,
	"AWS.SimpleQueueService.BatchEntryIdsNotDistinct":     true,
	"TooManyEntriesInBatchRequest":                        true,
	"AWS.SimpleQueueService.TooManyEntriesInBatchRequest": true,
	"EmptyBatchRequest":                                   true,
	"AWS.SimpleQueueService.EmptyBatchRequest":            true,
	"BatchRequestTooLong":                                 true,
	"AWS.SimpleQueueService.BatchRequestTooLong":          true,
}

// authCodes are credential and permission errors. They stay retryable on purpose: they belong
// to the relay's configuration, not to any message, so marking them permanent would dead-letter
// the whole outbox over a rotated key or a missing IAM statement. Retried with backoff, the
// messages flow again once the configuration is fixed, and MaxAttempts still bounds them.
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

// retryableEntryCodes are per-message failures that are retryable although SQS may flag them
// as the sender's fault: throttling, and KMS key problems of the queue's configuration.
var retryableEntryCodes = map[string]bool{
	"RequestThrottled":                 true,
	"ThrottlingException":              true,
	"KmsThrottled":                     true,
	"KMS.ThrottlingException":          true,
	"KmsAccessDenied":                  true,
	"KMS.AccessDeniedException":        true,
	"KmsDisabled":                      true,
	"KMS.DisabledException":            true,
	"KmsInvalidState":                  true,
	"KMS.InvalidStateException":        true,
	"KmsNotFound":                      true,
	"KMS.NotFoundException":            true,
	"KmsOptInRequired":                 true,
	"KMS.OptInRequired":                true,
	"KmsInvalidKeyUsage":               true,
	"KMS.InvalidKeyUsageException":     true,
	"InternalError":                    true,
	"InternalFailure":                  true,
	"ServiceUnavailable":               true,
	"AWS.SimpleQueueService.Throttled": true,
}

// classify wraps a failed call's error with what was being done, marking it permanent when no
// retry can fix it. Throttling, server errors, network errors and timeouts stay retryable.
func classify(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("sqs: %s: %w", op, err)
	}
	var qdne *types.QueueDoesNotExist
	if errors.As(err, &qdne) {
		return core.Permanent(fmt.Errorf("sqs: %s: the queue does not exist: %w", op, err))
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		code := api.ErrorCode()
		switch {
		case permanentCodes[code]:
			return core.Permanent(fmt.Errorf("sqs: %s: %w", op, err))
		case authCodes[code]:
			return fmt.Errorf("sqs: %s: AWS rejected the credentials or their permissions (check the keys, role and queue policy): %w", op, err)
		}
	}
	return fmt.Errorf("sqs: %s: %w", op, err)
}

// entryError turns one failed entry of a SendMessageBatch answer into the message's error:
// permanent when SQS blames the message (SenderFault, invalid parameters), retryable otherwise.
func entryError(queueURL string, e types.BatchResultErrorEntry) error {
	code := aws.ToString(e.Code)
	err := fmt.Errorf("sqs: queue %s rejected the message: %s: %s", queueURL, code, aws.ToString(e.Message))
	switch {
	case retryableEntryCodes[code]:
		return err
	case e.SenderFault || permanentCodes[code]:
		return core.Permanent(err)
	}
	return err
}
