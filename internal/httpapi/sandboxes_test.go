package httpapi

import (
	"context"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// The sandbox methods of fakeService: no test of it calls them, so each
// fails as an unexpected call would.

func (f *fakeService) CreateSandbox(context.Context, contexts.SandboxRequest) (contexts.SandboxInfo, error) {
	return contexts.SandboxInfo{}, errUnexpectedCall
}

func (f *fakeService) GetSandbox(string) (contexts.SandboxInfo, error) {
	return contexts.SandboxInfo{}, errUnexpectedCall
}

func (f *fakeService) ListSandboxes() []contexts.SandboxInfo { panic(errUnexpectedCall) }

func (f *fakeService) StopSandbox(context.Context, string) (contexts.SandboxInfo, error) {
	return contexts.SandboxInfo{}, errUnexpectedCall
}

func (f *fakeService) DeleteSandbox(context.Context, string) error { return errUnexpectedCall }

func (f *fakeService) SandboxContexts(string) ([]contexts.Info, error) {
	return nil, errUnexpectedCall
}

func (f *fakeService) SandboxContext(string, string) (contexts.Info, error) {
	return contexts.Info{}, errUnexpectedCall
}

func (f *fakeService) DefaultContext(context.Context, string, string) (contexts.Info, error) {
	return contexts.Info{}, errUnexpectedCall
}

func (f *fakeService) Templates(context.Context) ([]contexts.LanguageStatus, error) {
	return nil, errUnexpectedCall
}

func (f *fakeService) Template(context.Context, string) (contexts.LanguageStatus, error) {
	return contexts.LanguageStatus{}, errUnexpectedCall
}

func (f *fakeService) WorkingDir(string) (string, error) { return "", errUnexpectedCall }
