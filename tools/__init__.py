"""colvlm's developer tools: benchmarks, model training and fitting, sample data. Each runs
from the repository root as a module, `python -m tools.<name>` (`tools.recipes.tiny_llava`
rebuilds the bundled model); none is installed with the package."""
