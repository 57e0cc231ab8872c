package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/jettythunder/jetty/internal/safefile"
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
				if err := genDocsTree(root, dir, "_", ".md", doc.GenMarkdown); err != nil {
					return fmt.Errorf("markdown: %w", err)
				}
			}
			if man != "" {
				if err := os.MkdirAll(man, 0o755); err != nil {
					return err
				}
				hdr := &doc.GenManHeader{Title: "JETTY", Section: "1", Source: "jetty " + version}
				genMan := func(c *cobra.Command, w io.Writer) error {
					h := *hdr
					return doc.GenMan(c, &h, w)
				}
				if err := genDocsTree(root, man, "-", ".1", genMan); err != nil {
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

// genDocsTree writes one page per available command, named as cobra's
// doc.GenMarkdownTree and doc.GenManTree name them (the command path
// joined by sep, then ext), each through safefile.WriteFile: a new file
// renamed over the old one, so a link at a page's name is replaced and
// never followed, and a reader never sees half a page.
func genDocsTree(cmd *cobra.Command, dir, sep, ext string, gen func(*cobra.Command, io.Writer) error) error {
	for _, c := range cmd.Commands() {
		if !c.IsAvailableCommand() || c.IsAdditionalHelpTopicCommand() {
			continue
		}
		if err := genDocsTree(c, dir, sep, ext, gen); err != nil {
			return err
		}
	}
	var b bytes.Buffer
	if err := gen(cmd, &b); err != nil {
		return err
	}
	return safefile.WriteFile(filepath.Join(dir, strings.ReplaceAll(cmd.CommandPath(), " ", sep)+ext), b.Bytes(), 0o644)
}
