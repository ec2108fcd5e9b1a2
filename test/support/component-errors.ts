// What matchbox_component_errors_total (src/metrics/pipeline.ts) counts in this process so far.
import { componentErrors } from '../../src/metrics/pipeline.js';

/** Failed calls of `component` to `dependency` counted so far. */
export async function componentErrorCount(dependency: string, component: string): Promise<number> {
  const { values } = await componentErrors.get();
  return (
    values.find((v) => v.labels.dependency === dependency && v.labels.component === component)
      ?.value ?? 0
  );
}
