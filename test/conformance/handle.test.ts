import { backendCases } from './backends.js'
import { suite } from './suite.js'

for (const backendCase of backendCases) suite(backendCase, 'handle')
