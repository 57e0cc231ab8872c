package main

import (
	"github.com/spf13/cobra"
)

// NewCmdCompletion builds `jetty completion SHELL`.
func NewCmdCompletion(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `Print the completion script for your shell. Each shell needs a little setup
once; the lines below can be pasted as they are.

bash: needs the bash-completion package (version 2.x; scripts in its
directories load when a command is first completed):
  Debian, Ubuntu:  sudo apt install bash-completion
  Fedora, RHEL:    sudo dnf install bash-completion
  macOS (brew):    brew install bash-completion@2
                   (and follow brew's note to source it from ~/.bash_profile)
Then, for the current user:
  mkdir -p ~/.local/share/bash-completion/completions
  jetty completion bash > ~/.local/share/bash-completion/completions/jetty
or for every user of the machine:
  jetty completion bash | sudo tee /usr/share/bash-completion/completions/jetty > /dev/null
Open a new shell. To try it in the current shell only: source <(jetty completion bash)

zsh: needs compinit. If your ~/.zshrc does not call it yet, add:
  autoload -U compinit; compinit
Then put the script in a directory on $fpath, for the current user:
  mkdir -p ~/.zfunc
  jetty completion zsh > ~/.zfunc/_jetty
  echo 'fpath=(~/.zfunc $fpath)' >> ~/.zshrc    # before the compinit line
or for every user: jetty completion zsh | sudo tee "${fpath[1]}/_jetty" > /dev/null
Open a new shell (rm -f ~/.zcompdump* if completions do not appear).

fish: nothing to install:
  mkdir -p ~/.config/fish/completions
  jetty completion fish > ~/.config/fish/completions/jetty.fish

powershell: for the current session:
  jetty completion powershell | Out-String | Invoke-Expression
and for every new session, add that line to your profile:
  Add-Content $PROFILE 'jetty completion powershell | Out-String | Invoke-Expression'`,
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
