"""The ground floor every layer stands on: errors, the home folder, image reading, atomic writes, config
checks and the shared thread pool. It imports nothing else from logoid."""
