#pragma once
// Syntax-check stub: only the types LibTorch's ATen/cuda headers name.
typedef struct cusparseContext* cusparseHandle_t;
typedef enum { CUSPARSE_STATUS_SUCCESS = 0 } cusparseStatus_t;
