package docs_test

import (
	_ "k8s.io/kubectl/pkg/cmd"
)
