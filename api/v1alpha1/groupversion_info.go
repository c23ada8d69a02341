// Package v1alpha1 contains the cortex.helexa.ai/v1alpha1 API: Model and
// NeuronNode.
//
// +kubebuilder:object:generate=true
// +groupName=cortex.helexa.ai
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "cortex.helexa.ai", Version: "v1alpha1"}

	// SchemeBuilder adds the types of this group-version to a scheme. It
	// depends on apimachinery alone, so importing the API stays cheap.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this group-version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &Model{}, &ModelList{}, &NeuronNode{}, &NeuronNodeList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
