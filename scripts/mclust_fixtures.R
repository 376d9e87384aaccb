# mclust's fits of its fourteen covariance models, as JSON fixtures for tests/test_mclust_reference.py.
#
# Run once by hand (CI does not need R):  Rscript scripts/mclust_fixtures.R tests/data/mclust
# Needs R with mclust 6 and jsonlite (Debian: apt-get install r-cran-mclust r-cran-jsonlite).
# For each data set and G in 2..3 and each model: mclust's EM from its default (hierarchical) start, to a
# relative log-likelihood tolerance of 1e-12 (and 1e-12 in the inner loop of the iterative M-steps).
# Written per data set: the rows, and per fit the log-likelihood, BIC (mclust's sign: 2 loglik - df log n),
# the number of parameters, and the parameters (pro, mean as G x d, sigma as G x d x d); a fit mclust could not
# make (a singular covariance) is written with "fitted": false.
suppressPackageStartupMessages({
  library(mclust)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "tests/data/mclust"
dir.create(out, showWarnings = FALSE, recursive = TRUE)

data("diabetes", package = "mclust")
data("banknote", package = "mclust")
sets <- list(
  faithful = as.matrix(datasets::faithful),
  iris = as.matrix(datasets::iris[, 1:4]),
  diabetes = as.matrix(diabetes[, -1]),
  banknote = as.matrix(banknote[, -1])
)
models <- c("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV")
control <- emControl(tol = c(1e-12, 1e-12))

for (name in names(sets)) {
  X <- sets[[name]]
  fits <- list()
  for (G in 2:3) {
    for (model in models) {
      m <- tryCatch(
        Mclust(X, G = G, modelNames = model, control = control, verbose = FALSE),
        error = function(e) NULL
      )
      if (is.null(m) || is.null(m$parameters$variance$sigma) || !is.finite(m$loglik)) {
        fits[[length(fits) + 1]] <- list(model = model, G = G, fitted = FALSE)
        next
      }
      p <- m$parameters
      sigma <- p$variance$sigma  # d x d x G
      fits[[length(fits) + 1]] <- list(
        model = model, G = G, fitted = TRUE,
        loglik = m$loglik, bic = m$bic, df = m$df,
        pro = as.numeric(p$pro),
        mean = t(matrix(p$mean, nrow = ncol(X))),                      # G x d
        sigma = lapply(seq_len(G), function(k) sigma[, , k])          # G matrices d x d
      )
    }
  }
  doc <- list(
    dataset = name,
    mclust_version = as.character(packageVersion("mclust")),
    em_tolerance = 1e-12,
    columns = colnames(X),
    X = unname(X),
    fits = fits
  )
  writeLines(toJSON(doc, digits = NA, auto_unbox = TRUE, matrix = "rowmajor"), file.path(out, paste0(name, ".json")))
  cat(name, ": ", sum(sapply(fits, function(f) isTRUE(f$fitted))), " of ", length(fits), " fits\n", sep = "")
}
