package main

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// kmsKeyName is the name of the stack's static KMS key; the bucket's
// default encryption names it as its KMS key ID.
const kmsKeyName = "offload-site-key"

// makeKMSKey writes a new static KMS key for MinIO into the state folder
// (mode 0600; "name:base64 of 32 random bytes", the form
// MINIO_KMS_SECRET_KEY takes) and returns the environment entry that
// gives it to MinIO. A new stack gets a new key; its data goes with it.
func (st *state) makeKMSKey() (string, error) {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return "", err
	}
	value := kmsKeyName + ":" + base64.StdEncoding.EncodeToString(k[:])
	path := filepath.Join(st.dir, "kms.key")
	if err := os.WriteFile(path, []byte(value), 0o600); err != nil {
		return "", err
	}
	st.KMSKeyFile = path
	if err := st.save(); err != nil {
		return "", err
	}
	return "MINIO_KMS_SECRET_KEY=" + value, nil
}

// kmsEncryption is the bucket's default encryption with --kms, as the
// template's with KmsKeyArn: SSE-KMS with the site's key and an S3 Bucket
// Key (MinIO takes BucketKeyEnabled and has no bucket keys; see
// docs/reliability.md, "Production is not the local stack").
func kmsEncryption(bucket string) *s3.PutBucketEncryptionInput {
	return &s3.PutBucketEncryptionInput{Bucket: aws.String(bucket),
		ServerSideEncryptionConfiguration: &s3types.ServerSideEncryptionConfiguration{Rules: []s3types.ServerSideEncryptionRule{{
			ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{
				SSEAlgorithm: s3types.ServerSideEncryptionAwsKms, KMSMasterKeyID: aws.String(kmsKeyName)},
			BucketKeyEnabled: aws.Bool(true),
		}}}}
}
