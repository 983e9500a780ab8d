package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/photosleeve/offload/lambda"
	"github.com/photosleeve/offload/lambda/cdnsign"
)

// The CDN's settings: all three or none (template.yaml sets them with
// Cdn=on).
const (
	envCDNURL       = "OFFLOAD_CDN_URL"
	envCDNKeyPairID = "OFFLOAD_CDN_KEY_PAIR_ID"
	envCDNSecret    = "OFFLOAD_CDN_PRIVATE_KEY_SECRET"
)

// secretTimeout bounds the one GetSecretValue of a cold start, SDK retries
// included. Lambda gives the init phase 10 s; a Secrets Manager read takes
// milliseconds, and one still waiting after this is better reported as a
// configuration error (every request then gets a bare 500, and the log
// says why) than cut off by Lambda with no word.
const secretTimeout = 4 * time.Second

// cdnConfig is the CDN's settings before the key is read.
type cdnConfig struct{ baseURL, keyPairID, secretID string }

func (c cdnConfig) on() bool { return c.baseURL != "" }

// cdnSettings reads the CDN's settings and refuses a partial or bad one
// before anything is asked of AWS.
func cdnSettings(getenv func(string) string) (cdnConfig, error) {
	c := cdnConfig{baseURL: getenv(envCDNURL), keyPairID: getenv(envCDNKeyPairID), secretID: getenv(envCDNSecret)}
	set := 0
	for _, v := range []string{c.baseURL, c.keyPairID, c.secretID} {
		if v != "" {
			set++
		}
	}
	switch set {
	case 0:
		return cdnConfig{}, nil
	case 3:
	default:
		return cdnConfig{}, fmt.Errorf("cdn: set all of %s, %s and %s, or none (got %s=%q, %s=%q, %s set: %v)",
			envCDNURL, envCDNKeyPairID, envCDNSecret, envCDNURL, c.baseURL, envCDNKeyPairID, c.keyPairID, envCDNSecret, c.secretID != "")
	}
	if err := lambda.CheckCDNBaseURL(c.baseURL); err != nil {
		return cdnConfig{}, fmt.Errorf("cdn: %w (%s)", err, envCDNURL)
	}
	return c, nil
}

// secretGetter is what load needs from Secrets Manager.
type secretGetter interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

var _ secretGetter = (*secretsmanager.Client)(nil)

// load reads the private key from Secrets Manager, once per process (per
// Lambda cold start), and builds the CDN's signer. The key is never logged
// and never part of an error: GetSecretValue returns the secret's current
// version (AWSCURRENT) in SecretString
// (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html);
// the caller needs secretsmanager:GetSecretValue on the secret, and
// kms:Decrypt only if the secret is encrypted with a customer managed key
// (https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html).
func (c cdnConfig) load(ctx context.Context, sm secretGetter) (*lambda.CDN, error) {
	ctx, cancel := context.WithTimeout(ctx, secretTimeout)
	defer cancel()
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(c.secretID)})
	if err != nil {
		return nil, fmt.Errorf("cdn: read the private key from Secrets Manager (%s): %w", envCDNSecret, err)
	}
	if out.SecretString == nil {
		return nil, errors.New("cdn: the secret has no SecretString: store the PEM private key as the secret's text (" + envCDNSecret + ")")
	}
	s, err := cdnsign.New(c.keyPairID, []byte(*out.SecretString))
	if err != nil {
		return nil, fmt.Errorf("cdn: the key in %s or %s: %w", envCDNSecret, envCDNKeyPairID, err)
	}
	return &lambda.CDN{BaseURL: c.baseURL, Signer: s}, nil
}
