package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// NewCmdGenDocs builds the hidden `jetty gen-docs`, which writes the
// command reference as Markdown (docs/cli) and man pages.
func NewCmdGenDocs(f *Factory) *cobra.Command {
	var dir, man string
	cmd := &cobra.Command{
		Use:    "gen-docs",
		Short:  "Write the command reference (Markdown and man pages)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			root.DisableAutoGenTag = true
			if dir != "" {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return err
				}
				if err := doc.GenMarkdownTree(root, dir); err != nil {
					return fmt.Errorf("markdown: %w", err)
				}
			}
			if man != "" {
				if err := os.MkdirAll(man, 0o755); err != nil {
					return err
				}
				hdr := &doc.GenManHeader{Title: "JETTY", Section: "1", Source: "jetty " + version}
				if err := doc.GenManTree(root, hdr, man); err != nil {
					return fmt.Errorf("man pages: %w", err)
				}
			}
			fmt.Fprintf(f.IO.ErrOut, "wrote %s\n", filepath.Join(dir, "*.md")+" "+man)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "markdown", "docs/cli", "directory for the Markdown reference (empty: none)")
	cmd.Flags().StringVar(&man, "man", "", "directory for man pages (empty: none)")
	return cmd
}
