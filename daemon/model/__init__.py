"""Models: the backend protocol, loaders, the compact model, its front-ends, ensembles."""
