/*
 * lcattn.c - the lcattn command: git-style subcommands over the library.
 */
#include "lcattn.h"
#include "tool.h"

#include <stdio.h>
#include <string.h>

static const struct {
	const char *name;
	int (*run)(int, char **);
	const char *what;
} commands[] = {
	{ "demo", tool_demo, "compare the four mechanisms on one random input" },
	{ "gen", tool_gen, "write a golden file: seeded inputs, double-reference outputs" },
	{ "run", tool_run, "run a backend on a golden file's inputs, write its outputs" },
	{ "check", tool_check, "compare a candidate's outputs with a golden file's" },
	{ "bench", tool_bench, "time the cpu backend against this machine's ceilings" },
	{ "probe", tool_probe, "measure what each mechanism gives up (lcattn-probes(7))" },
	{ "cost", tool_cost, "modelled FLOPs and state bytes of the production presets" },
	{ "report", tool_report, "the architecture comparison: report.md, measured and modelled" },
	{ "checkpoint", tool_checkpoint, "info, verify or convert a decode-cache checkpoint" },
};

static int usage(FILE *f)
{
	fprintf(f, "usage: lcattn [--version] [--help] COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].what);
	fprintf(f, "\n'lcattn COMMAND --help' describes a command; see lcattn(1).\n");
	return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
		return usage(stdout);
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("lcattn %s\ncpu isa: %s\n", lca_version(), lca_cpu_isa());
		return 0;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "lcattn: unknown command '%s'\n", argv[1]);
	return usage(stderr);
}
