# runnel_add_handler(NAME [SOURCES] source...): builds a runnel handler plugin, NAME.so, from C++
# (or C) sources against the runnel::handler SDK target. Used in-tree for runnel's own example
# handlers and installed with the CMake package for out-of-tree plugins:
#
#   find_package(runnel REQUIRED)
#   runnel_add_handler(my_handler SOURCES my_handler.cc)
#
# The plugin exports only its entry point (everything else is hidden, so two plugins in one
# process cannot clash), and the file is NAME.so with no "lib" prefix: it is loaded by path, not
# linked against.
function(runnel_add_handler name)
  cmake_parse_arguments(ARG "" "" "SOURCES" ${ARGN})
  set(sources ${ARG_SOURCES} ${ARG_UNPARSED_ARGUMENTS})
  if(NOT sources)
    message(FATAL_ERROR "runnel_add_handler(${name}): no SOURCES")
  endif()
  add_library(${name} MODULE ${sources})
  target_link_libraries(${name} PRIVATE runnel::handler)
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    POSITION_INDEPENDENT_CODE ON)
endfunction()
