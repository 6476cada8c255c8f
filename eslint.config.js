// One linter for the whole workspace (STYLE.md, Tests): ESLint's and typescript-eslint's recommended rules
// over every .ts, .mjs and .js file (packages/*/src and bench, test/, bench/, examples/, these configs), plus
// three rules that need types, on the .ts files: a promise nobody awaits or handles is a write whose failure
// nobody sees. Formatting is Prettier's job (prettier.config.js); no rule here is about layout.
import { fileURLToPath } from 'node:url'
import js from '@eslint/js'
import { defineConfig, globalIgnores } from 'eslint/config'
import globals from 'globals'
import tseslint from 'typescript-eslint'

export default defineConfig(
  globalIgnores([
    '**/dist/',
    '**/node_modules/',
    '**/coverage/',
    'bench/results/',
    // AssemblyScript, not TypeScript: `@inline function` does not parse; asc checks it when it builds.
    'packages/workers/assembly/',
  ]),
  {
    files: ['**/*.{ts,mts,js,mjs}'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    languageOptions: {
      // Everything here runs on Node: the packages, their worker threads, tests, benchmarks, examples.
      globals: globals.node,
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
  {
    // Types come from the projects that already type-check each file: the packages' builds, bench/, and
    // tsconfig.test.json (tests, test doubles, config files). About 5 s more than linting without types.
    files: ['**/*.{ts,mts}'],
    languageOptions: {
      parserOptions: {
        project: ['./packages/*/tsconfig.json', './bench/tsconfig.json', './tsconfig.test.json'],
        tsconfigRootDir: fileURLToPath(new URL('.', import.meta.url)),
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
    },
  },
)
