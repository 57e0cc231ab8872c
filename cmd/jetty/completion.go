package main

import (
	"github.com/spf13/cobra"
)

// NewCmdCompletion builds `jetty completion SHELL`.
func NewCmdCompletion(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `Print the completion script for your shell.

  bash:        source <(jetty completion bash)
               (or save it to /etc/bash_completion.d/jetty)
  zsh:         jetty completion zsh > "${fpath[1]}/_jetty"
  fish:        jetty completion fish > ~/.config/fish/completions/jetty.fish
  powershell:  jetty completion powershell | Out-String | Invoke-Expression`,
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("jetty completion needs one shell: bash, zsh, fish or powershell")
			}
			root, out := cmd.Root(), f.IO.Out
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(out)
			}
			return usageError("unknown shell %q: use bash, zsh, fish or powershell", args[0])
		},
	}
}
