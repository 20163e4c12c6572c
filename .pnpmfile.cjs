// Hooks pnpm runs in this workspace.
module.exports = {
  hooks: {
    /**
     * The manifest that goes into a published tarball (pnpm pack, pnpm publish, changeset publish): without
     * devDependencies (private workspace tools, driver aliases) and scripts, which only serve this repository.
     */
    beforePacking(pkg) {
      delete pkg.devDependencies;
      delete pkg.scripts;
      return pkg;
    },
  },
};
