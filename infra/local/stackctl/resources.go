package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/templatepolicy"
)

// createResources creates the bucket and the ledger table, retrying while a
// server that already answers its health check finishes starting.
func createResources(ctx context.Context, st *state) error {
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(accessKey, secretKey, "")),
		config.WithEC2IMDSClientEnableState(imds.ClientDisabled),
		config.WithSharedConfigFiles([]string{}),
		config.WithSharedCredentialsFiles([]string{}),
	}
	if st.CAFile != "" {
		f, err := os.Open(st.CAFile)
		if err != nil {
			return err
		}
		defer f.Close()
		opts = append(opts, config.WithCustomCABundle(f))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return err
	}
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(st.S3Endpoint)
		o.UsePathStyle = true
	})
	db := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(st.DynamoDBEndpoint)
	})

	if err := retry(ctx, "create bucket "+bucket, func() error {
		_, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
		var owned *s3types.BucketAlreadyOwnedByYou
		if errors.As(err, &owned) {
			return nil
		}
		return err
	}); err != nil {
		return err
	}
	// Versioned like the template's bucket: the ledger records each
	// object's version id, and the resolver redirects to that version.
	if err := retry(ctx, "enable versioning on "+bucket, func() error {
		_, err := s3c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(bucket),
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}})
		return err
	}); err != nil {
		return err
	}
	if st.KMS {
		if err := retry(ctx, "default encryption SSE-KMS on "+bucket, func() error {
			_, err := s3c.PutBucketEncryption(ctx, kmsEncryption(bucket))
			return err
		}); err != nil {
			return err
		}
	}
	if st.S3Kind == "minio" {
		if err := grantComponents(ctx, st, cfg); err != nil {
			return err
		}
	}
	return retry(ctx, "create table "+table, func() error {
		_, err := db.CreateTable(ctx, ledgerTable(table))
		var inUse *dbtypes.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) {
			return err
		}
		return dynamodb.NewTableExistsWaiter(db).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, 30*time.Second)
	})
}

// ledgerTable is template.yaml's LedgerTable: the key and the sparse index
// "erasures". The index is made with the table because dynalite 4.0.0
// ignores an index added later (its UpdateTable handles only the Update of
// an index's throughput); each "stackctl up" starts with an empty data
// directory, so the table is always new.
func ledgerTable(name string) *dynamodb.CreateTableInput {
	attr := func(n string) dbtypes.AttributeDefinition {
		return dbtypes.AttributeDefinition{AttributeName: aws.String(n), AttributeType: dbtypes.ScalarAttributeTypeS}
	}
	key := func(n string, t dbtypes.KeyType) dbtypes.KeySchemaElement {
		return dbtypes.KeySchemaElement{AttributeName: aws.String(n), KeyType: t}
	}
	return &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          dbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []dbtypes.AttributeDefinition{attr(offload.LedgerPartitionKey), attr(offload.ErasedInAttr), attr(offload.ErasedAtAttr)},
		KeySchema:            []dbtypes.KeySchemaElement{key(offload.LedgerPartitionKey, dbtypes.KeyTypeHash)},
		GlobalSecondaryIndexes: []dbtypes.GlobalSecondaryIndex{{
			IndexName:  aws.String(offload.ErasuresIndex),
			KeySchema:  []dbtypes.KeySchemaElement{key(offload.ErasedInAttr, dbtypes.KeyTypeHash), key(offload.ErasedAtAttr, dbtypes.KeyTypeRange)},
			Projection: &dbtypes.Projection{ProjectionType: dbtypes.ProjectionTypeKeysOnly},
		}},
	}
}

// componentCreds are temporary credentials restricted to what
// template.yaml grants one component.
type componentCreds struct {
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
	SessionToken    string `json:"session_token"`
	// ListBucket: the policy allows s3:ListBucket on the bucket, so S3
	// answers 404 (not 403) for a missing key.
	ListBucket bool `json:"list_bucket"`
	// GetObjectVersion: the policy allows reading a specific version,
	// which AWS checks and MinIO does not.
	GetObjectVersion bool `json:"get_object_version"`
	// GetObject: the policy allows reading the current version, which
	// MinIO also grants with s3:GetObjectVersion alone and AWS does not.
	GetObject bool `json:"get_object"`
	// DeleteObject and DeleteObjectVersion: the policy allows deleting
	// without a version id, and a specific version (see the AWS shim).
	DeleteObject        bool `json:"delete_object"`
	DeleteObjectVersion bool `json:"delete_object_version"`
	// KMSDecrypt and KMSGenerateDataKey: with KmsKeyArn set (the
	// stack's --kms), the template grants kms:Decrypt,
	// kms:GenerateDataKey on the key (see the AWS shim).
	KMSDecrypt         bool `json:"kms_decrypt"`
	KMSGenerateDataKey bool `json:"kms_generate_data_key"`
}

// componentCredsLife is how long the components' credentials last: longer
// than any stack a test run or a working day keeps up.
const componentCredsLife = 7 * 24 * time.Hour

// grantComponents gives the agent, the resolver, the audit, the eraser and
// the local CloudFront edge (templatepolicy.Cloudfront) credentials whose only permissions are the S3 part of what template.yaml
// grants each (read from the template at every start, never copied): STS
// AssumeRole with the policy as the session policy. MinIO allows
// everything the session policy allows and nothing else, as AWS does for
// the intersection of a role's and a session's policies; the root user's
// own policy is all. The policy is told to MinIO in its own terms
// (templatepolicy.Document.ForMinIO).
func grantComponents(ctx context.Context, st *state, cfg aws.Config) error {
	tmpl, err := os.ReadFile(templatepolicy.TemplatePath(st.repo))
	if err != nil {
		return err
	}
	target := templatepolicy.Target{Bucket: bucket, KeyPrefix: stackKeyPrefix}
	st.Components = map[string]componentCreds{}
	for _, c := range templatepolicy.Components {
		doc, err := templatepolicy.S3Policy(tmpl, c, target)
		if err != nil {
			return err
		}
		kms, err := templatepolicy.KMSGrants(tmpl, c)
		if err != nil {
			return err
		}
		var creds aws.Credentials
		if err := retry(ctx, "credentials for "+c, func() error {
			creds, err = templatepolicy.Assume(ctx, cfg, st.S3Endpoint, c, doc, componentCredsLife)
			return err
		}); err != nil {
			return err
		}
		st.Components[c] = componentCreds{
			AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey,
			SessionToken: creds.SessionToken, ListBucket: doc.Allows("s3:ListBucket", target.BucketARN()),
			GetObjectVersion:    doc.AllowsOn("s3:GetObjectVersion", target.BucketARN()+"/"),
			GetObject:           doc.AllowsOn("s3:GetObject", target.BucketARN()+"/"),
			DeleteObject:        doc.AllowsOn("s3:DeleteObject", target.BucketARN()+"/"),
			DeleteObjectVersion: doc.AllowsOn("s3:DeleteObjectVersion", target.BucketARN()+"/"),
			KMSDecrypt:          kms.Decrypt, KMSGenerateDataKey: kms.GenerateDataKey,
		}
	}
	return st.save()
}

// stackKeyPrefix is the KeyPrefix the components' policies are made for.
// Empty, so that every test's own prefix (test/NAME/...), the demo's
// original/ and the bench's all fall under the grant.
const stackKeyPrefix = ""

// retry calls f until it succeeds or the context ends.
func retry(ctx context.Context, what string, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
