# Tollgate's two everyday commands are `make dev` and `make test`; each installs what it needs.
SHELL := bash
.DEFAULT_GOAL := help

.PHONY: help dev test lint fmt template-lint conformance package sam-build bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

dev: ## run the API on 127.0.0.1:3000 with DynamoDB Local, print a token and curl examples
	infra/scripts/dev.sh

test: ## the whole suite against DynamoDB Local (started and stopped here)
	infra/scripts/test.sh

lint: ## rustfmt, clippy -D warnings, cfn-lint, sam validate --lint and parliament (IAM policies)
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	infra/scripts/lint-template.sh

conformance: ## schemathesis against the dev gateway with a token of each role (docs/openapi.yaml)
	infra/scripts/conformance.sh

package: ## arm64 Lambda artifacts: cargo lambda build --release --arm64, sizes in target/lambda/sizes.tsv
	infra/scripts/package.sh

sam-build: ## sam build --beta-features (offline), then checks each function's aarch64 bootstrap in .aws-sam/build
	infra/scripts/sam-build.sh

bench: ## every benchmark (size, init, hot paths, throughput, DynamoDB cost); rewrites docs/BENCHMARKS.md
	infra/scripts/bench.sh

fmt: ## format the code
	cargo fmt --all

template-lint: ## cfn-lint, sam validate --lint and parliament only
	infra/scripts/lint-template.sh

clean: ## remove build output and local state
	cargo clean
	rm -rf .tollgate
