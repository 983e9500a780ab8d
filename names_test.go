package offload

import (
	"strings"
	"testing"
)

// TestCheckBucketName: one case per rule of
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html,
// each refusal naming the rule it breaks.
func TestCheckBucketName(t *testing.T) {
	for _, name := range []string{"offload-originals", "abc", "my.bucket.name", "a1-b2", strings.Repeat("a", 63), "1.2.3", "docexamplebucket1"} {
		if err := CheckBucketName(name); err != nil {
			t.Errorf("CheckBucketName(%q) = %v; want nil", name, err)
		}
	}
	for _, tt := range []struct{ name, want string }{
		{"", "a bucket name has 3 to 63"},
		{"ab", "a bucket name has 3 to 63"},
		{strings.Repeat("a", 64), "a bucket name has 3 to 63"},
		{"Bad_Bucket!!", `'B' is not allowed`},
		{"my_bucket", `'_' is not allowed`},
		{"café-bucket", `'é' is not allowed`},
		{"-bucket", "begin and end with a lowercase letter or digit"},
		{"bucket-", "begin and end with a lowercase letter or digit"},
		{".bucket", "begin and end"},
		{"my..bucket", "two adjacent periods"},
		{"192.168.5.4", "IP address"},
		{"xn--bucket", "prefix xn-- is reserved"},
		{"sthree-bucket", "prefix sthree-"},
		{"sthree-configurator-x", "prefix sthree-"},
		{"amzn-s3-demo-bucket", "prefix amzn-s3-demo-"},
		{"bucket-s3alias", "suffix -s3alias"},
		{"bucket--ol-s3", "suffix --ol-s3"},
		{"bucket.mrap", "suffix .mrap"},
		{"bucket--table-s3", "suffix --table-s3"},
		{"base--usw2-az1--x-s3", "directory bucket name"},
	} {
		err := CheckBucketName(tt.name)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CheckBucketName(%q) = %v; want an error saying %q", tt.name, err, tt.want)
		}
	}
}

// TestCheckTableName: DynamoDB's rules
// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html).
func TestCheckTableName(t *testing.T) {
	for _, name := range []string{"offload-ledger", "Ledger_2024.v1", "abc", strings.Repeat("A", 255)} {
		if err := CheckTableName(name); err != nil {
			t.Errorf("CheckTableName(%q) = %v; want nil", name, err)
		}
	}
	for _, tt := range []struct{ name, want string }{
		{"t", "a table name has 3 to 255"},
		{strings.Repeat("a", 256), "a table name has 3 to 255"},
		{"my table", `' ' is not allowed`},
		{"ledger/1", `'/' is not allowed`},
		{"arn:aws:dynamodb:us-east-1:123456789012:table/ledger", `':' is not allowed`},
	} {
		err := CheckTableName(tt.name)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CheckTableName(%q) = %v; want an error saying %q", tt.name, err, tt.want)
		}
	}
}

func TestCheckDistributionID(t *testing.T) {
	for _, ok := range []string{"EDFDVBD6EXAMPLE", "E2QWRUHAPOMQZL"} {
		if err := CheckDistributionID(ok); err != nil {
			t.Errorf("CheckDistributionID(%q) = %v; want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "0", "0s", "E", "edfdvbd6example", "EDF/../x", "EDF\nOFFLOAD_BUCKET=x", "ADFDVBD6EXAMPLE"} {
		if err := CheckDistributionID(bad); err == nil {
			t.Errorf("CheckDistributionID(%q) = nil; want an error", bad)
		}
	}
}
