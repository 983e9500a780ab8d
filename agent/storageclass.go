package agent

import (
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// servableClasses are the S3 storage classes of a general purpose bucket
// whose objects a GET reads at once, so the resolver's presigned URL serves
// them as it serves STANDARD: Standard-IA, One Zone-IA and Glacier Instant
// Retrieval in milliseconds, with a retrieval fee per GB, and
// Intelligent-Tiering in its Frequent, Infrequent and Archive Instant
// Access tiers. Intelligent-Tiering's Archive and Deep Archive Access tiers
// need a restore, but an object goes there only under an
// S3 Intelligent-Tiering configuration of the bucket that opts in
// ("You only need S3 Intelligent-Tiering enabled on a bucket if you want to
// automatically move objects stored in the S3 Intelligent-Tiering storage
// class to the Archive Access or Deep Archive Access tier",
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketIntelligentTieringConfiguration.html),
// and template.yaml creates none. REDUCED_REDUNDANCY is served too; AWS
// advises against it, but it is one of the two classes the local MinIO
// knows, so the stack's tests upload with it.
var servableClasses = []types.StorageClass{
	types.StorageClassStandard, types.StorageClassReducedRedundancy, types.StorageClassStandardIa,
	types.StorageClassOnezoneIa, types.StorageClassIntelligentTiering, types.StorageClassGlacierIr,
}

// archiveClasses are the classes whose objects must be restored before a
// GET: "If the object you are retrieving is stored in the S3 Glacier
// Flexible Retrieval storage class, the S3 Glacier Deep Archive storage
// class, [...] before you can retrieve the object you must first restore a
// copy using RestoreObject. Otherwise, this operation returns an
// InvalidObjectState error."
// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html)
var archiveClasses = map[types.StorageClass]string{
	types.StorageClassGlacier:     "S3 Glacier Flexible Retrieval",
	types.StorageClassDeepArchive: "S3 Glacier Deep Archive",
}

// CheckStorageClass refuses a storage class the resolver could not serve
// without a restore, and anything that is not one of S3's names for a
// class of a general purpose bucket. "" is none: S3 stores STANDARD.
func CheckStorageClass(class string) error {
	c := types.StorageClass(class)
	switch {
	case class == "" || slices.Contains(servableClasses, c):
		return nil
	case archiveClasses[c] != "":
		return fmt.Errorf("%s (%s) must be restored before a GET, so the resolver's URL would fail in the browser; choose GLACIER_IR or INTELLIGENT_TIERING to store for less and still serve at once", class, archiveClasses[c])
	case slices.Contains(types.StorageClass("").Values(), c):
		// OUTPOSTS, SNOW, EXPRESS_ONEZONE (directory buckets), FSx's and
		// AWS Backup's: S3's names, for storage other than this bucket.
		return fmt.Errorf("%s is a class of other AWS storage, not in a general purpose bucket; want one of %v", class, servableClasses)
	}
	return fmt.Errorf("%q is not an S3 storage class (S3's names are upper case: %v)", class, servableClasses)
}

// recordedClass is the class the ledger records for an object S3 stores in
// class: "" for STANDARD, which a HEAD does not name either ("Amazon S3
// returns this header for all objects except for S3 Standard storage class
// objects", https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html).
func recordedClass(class types.StorageClass) string {
	if class == types.StorageClassStandard {
		return ""
	}
	return string(class)
}
