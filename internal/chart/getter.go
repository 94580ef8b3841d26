package chart

import (
	"fmt"
	"os"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Getter is what Helm's kube client needs to reach the API server of cfg as its user, in namespace: a kubeconfig,
// written to a temporary file whose path it returns (the caller removes it).
func Getter(cfg *rest.Config, namespace string) (genericclioptions.RESTClientGetter, string, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["sandbox"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData,
		Token: cfg.BearerToken}
	kc.Contexts["sandbox"] = &clientcmdapi.Context{Cluster: "sandbox", AuthInfo: "admin", Namespace: namespace}
	kc.CurrentContext = "sandbox"
	f, err := os.CreateTemp("", "labrun-chart-kubeconfig-*")
	if err != nil {
		return nil, "", err
	}
	f.Close()
	path := f.Name()
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return nil, path, fmt.Errorf("writing the sandbox's kubeconfig: %w", err)
	}
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &path, &namespace
	return flags, path, nil
}
