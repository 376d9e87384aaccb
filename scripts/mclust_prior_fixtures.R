# mclust's MAP fits under its default conjugate prior, as JSON fixtures for the MAP M-steps of its models.
#
# Run once by hand (CI does not need R):  Rscript scripts/mclust_prior_fixtures.R tests/data/mclust_prior
# Needs R with mclust 6 and jsonlite (Debian: apt-get install r-cran-mclust r-cran-jsonlite).
# The ten models mclust gives a prior to in more than one dimension (defaultPrior), on three data sets, G in 2..3.
# Written per data set:
# - fits: Mclust(prior = priorControl()) from its default (hierarchical) start, EM to a relative log-likelihood
#   tolerance of 1e-12 (1e-12 in the inner loop of VEI and VEV): the log-likelihood (mclust reports the likelihood,
#   not the posterior), BIC (mclust's sign), the parameter count, the parameters (pro, mean as G x d, sigma as
#   G x d x d) and the prior as defaultPrior resolved it for that model and G (scale: one number for EII VII EEI
#   VEI EVI VVI, a d x d matrix for EEE EEV VEV VVV); a fit mclust could not make is written with "fitted": false.
# - steps: one MAP M-step of me() (itmax 1: mclust's Fortran me*p routines, the ones its EM runs) from seeded
#   random responsibilities z (n x G, written), with the default prior and with shrinkage 0 (no prior on the
#   means), and the parameters it gives.
suppressPackageStartupMessages({
  library(mclust)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "tests/data/mclust_prior"
dir.create(out, showWarnings = FALSE, recursive = TRUE)

data("diabetes", package = "mclust")
sets <- list(
  faithful = as.matrix(datasets::faithful),
  iris = as.matrix(datasets::iris[, 1:4]),
  diabetes = as.matrix(diabetes[, -1])
)
models <- c("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "EEV", "VEV", "VVV")
control <- emControl(tol = c(1e-12, 1e-12))
one_step <- emControl(tol = c(1e-12, 1e-12), itmax = c(1, .Machine$integer.max))

resolved <- function(X, G, model, prior) {
  p <- do.call(prior$functionName, c(list(data = X, G = G, modelName = model), prior[names(prior) != "functionName"]))
  list(shrinkage = p$shrinkage, mean = unname(as.numeric(p$mean)), dof = p$dof, scale = unname(p$scale))
}

responsibilities <- function(n, G) { # seeded random z, rows summing to 1
  set.seed(G)
  z <- matrix(rgamma(n * G, shape = 1), n, G)
  z / rowSums(z)
}

parameters <- function(p) {
  sigma <- p$variance$sigma # d x d x G
  list(
    pro = as.numeric(p$pro),
    mean = t(unname(p$mean)), # G x d
    sigma = lapply(seq_len(dim(sigma)[3]), function(k) unname(sigma[, , k]))
  )
}

for (name in names(sets)) {
  X <- sets[[name]]
  n <- nrow(X)
  fits <- list()
  steps <- list()
  for (G in 2:3) {
    z <- responsibilities(n, G)
    for (model in models) {
      m <- tryCatch(
        Mclust(X, G = G, modelNames = model, prior = priorControl(), control = control, verbose = FALSE),
        error = function(e) NULL
      )
      if (is.null(m) || is.null(m$parameters$variance$sigma) || !is.finite(m$loglik)) {
        fits[[length(fits) + 1]] <- list(model = model, G = G, fitted = FALSE)
      } else {
        fits[[length(fits) + 1]] <- c(
          list(model = model, G = G, fitted = TRUE, loglik = m$loglik, bic = m$bic, df = m$df),
          parameters(m$parameters),
          list(prior = resolved(X, G, model, priorControl()))
        )
      }
      for (shrinkage in c(0.01, 0)) {
        prior <- if (shrinkage > 0) priorControl() else priorControl(shrinkage = 0)
        s <- me(data = X, modelName = model, z = z, prior = prior, control = one_step, warn = FALSE)
        steps[[length(steps) + 1]] <- c(
          list(model = model, G = G, shrinkage = shrinkage),
          parameters(s$parameters),
          list(prior = resolved(X, G, model, prior))
        )
      }
    }
  }
  doc <- list(
    dataset = name,
    mclust_version = as.character(packageVersion("mclust")),
    em_tolerance = 1e-12,
    columns = colnames(X),
    X = unname(X),
    z = list(`2` = responsibilities(n, 2), `3` = responsibilities(n, 3)), # the steps' responsibilities, by G
    fits = fits,
    steps = steps
  )
  writeLines(toJSON(doc, digits = NA, auto_unbox = TRUE, matrix = "rowmajor"), file.path(out, paste0(name, ".json")))
  cat(name, ": ", sum(sapply(fits, function(f) isTRUE(f$fitted))), " of ", length(fits), " fits, ",
      length(steps), " steps\n", sep = "")
}
