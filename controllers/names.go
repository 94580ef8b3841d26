package controllers

// Names the operator gives what it creates.

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// shortName is name cut to n bytes, without a trailing '-' or '.' (a DNS label may not end in one).
func shortName(name string, n int) string {
	if len(name) > n {
		name = name[:n]
	}
	return strings.TrimRight(name, "-.")
}

// hash is a short, stable digest of s (10 hex digits) for names derived from it.
func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:10]
}

// ownerAnnotation points an object back at its LabRun (ownerOf maps its events to the run).
func ownerAnnotation(run *labsv1.LabRun) map[string]string {
	return map[string]string{labsv1.AnnotationOwner: run.Namespace + "/" + run.Name}
}
