// RETURN_IF_ERROR and ASSIGN_OR_RETURN: Debian 12's Abseil (20220623) ships neither.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RUNNEL_CONCAT_INNER(a, b) a##b
#define RUNNEL_CONCAT(a, b) RUNNEL_CONCAT_INNER(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                                                                \
  do {                                                                                       \
    if (::absl::Status _runnel_status = (expr); !_runnel_status.ok()) return _runnel_status; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, F());` declares x from a StatusOr or returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  RUNNEL_ASSIGN_OR_RETURN_IMPL(RUNNEL_CONCAT(_runnel_statusor_, __LINE__), lhs, expr)
#define RUNNEL_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr)  \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
