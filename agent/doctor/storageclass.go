package doctor

import (
	"github.com/photosleeve/offload/agent"
)

// minBillableClasses bill an object of less than 128 KB as 128 KB, and for
// at least 30 (Standard-IA, One Zone-IA) or 90 days (Glacier IR)
// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-class-intro.html#sc-compare).
var minBillableClasses = map[string]bool{"STANDARD_IA": true, "ONEZONE_IA": true, "GLACIER_IR": true}

// StorageClass checks the agent's --storage-class (OFFLOAD_STORAGE_CLASS):
// one the agent refuses fails, as the agent would not start; one with a
// 128 KB minimum billable size passes with a warning, since a site with
// many small files (thumbnails, icons) pays more for them there than in
// Standard. It asks nothing of AWS and looks at no file.
func StorageClass(class string) Result {
	const name = "storage-class"
	if err := agent.CheckStorageClass(class); err != nil {
		return fail(name, "set OFFLOAD_STORAGE_CLASS to INTELLIGENT_TIERING, GLACIER_IR, STANDARD_IA or ONEZONE_IA, or remove it (STANDARD)", "%v", err)
	}
	switch {
	case class == "":
		return ok(name, "none: S3 stores STANDARD")
	case minBillableClasses[class]:
		return Result{Status: Warn, Name: name,
			Detail: class + ": a file under 128 KB is billed as 128 KB, for 30 days at least (90 in GLACIER_IR)",
			Fix:    "for many small files, INTELLIGENT_TIERING costs less (it bills them at Standard's rate, with no minimum); see BENCHMARKS.md, Storage: cost per GB-month"}
	}
	return ok(name, "%s", class)
}
